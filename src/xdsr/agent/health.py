"""Health checks of backends, from the LB node, on each backend's VLAN.

L2DSR puts the node on the backends' L2 segment, as IPVS-DR and hardware
balancers in DSR mode are; like them, the node checks from its own address
on that segment (its *health source*, one per VLAN and node, configured with
`xdsr agent --health-source VLAN=ADDRESS`; IPv6 checks use the trunk's
link-local address unless one is given). The node has no VLAN device and no
address in the kernel there (docs/agent.md, MAC resolution), so, as for MAC
resolution, the agent builds the frames itself and reads the answers from an
AF_PACKET socket, and it answers ARP and Neighbor Solicitations for its
health sources itself (the backend asks before it can answer a check).

* tcp: SYN to the backend's port; SYN-ACK = up (then RST: no connection is
  left half-open), RST or ICMP unreachable = down, silence = down.
* udp: a datagram to the port; ICMP port unreachable = down, silence = up
  (Octavia's UDP-CONNECT: UDP has no handshake to wait for).
* ping: ICMP/ICMPv6 echo; a reply = up.

A member on a VXLAN or Geneve segment is checked the same way from the
node's health source on that VNI (`--health-source vxlan:VNI=ADDRESS`): the
frames go encapsulated from the node's tunnel endpoint to the member's (the
outer destination MAC is the underlay next hop the data plane uses for it),
and its host's endpoint sends the answers back encapsulated to the node's,
where the agent takes them out of the tunnel (probes.Encapsulated). The
member's ARP or Neighbor Solicitation for the health source comes the same
way and is answered through the tunnel it came by.

A backend is up until `fall` checks in a row fail, then down until `rise` in
a row succeed. The agent only reports what it sees (ServiceReport.down): the
tables must stay identical on every node of a group, so the operator decides
which backends leave them, from the reports of all the group's nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from xdsr.agent import frames, probes, trunk
from xdsr.dataplane.model import TunnelEndpoint
from xdsr.net.frames import mac_bytes

log = logging.getLogger("xdsr.agent.health")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
EPHEMERAL = (32768, 60999)

# Where a health source is: a VLAN id, or (vxlan|geneve, VNI) for an overlay.
SegmentKey = int | tuple[str, int]


@dataclass(frozen=True)
class Overlay:
    """A member behind a tunnel: its VNI, its host's endpoint, and the
    underlay next hop towards that endpoint."""

    kind: str  # vxlan | geneve
    vni: int
    vtep: IPAddress
    hop_mac: str


@dataclass(frozen=True)
class Target:
    """One check: what, where, how often. Services that check the same
    backend the same way share it."""

    kind: str  # tcp | udp | ping
    vid: int  # 0 behind a tunnel
    mac: str  # behind a tunnel: the member's inner MAC
    address: IPAddress
    port: int  # 0 for ping
    delay: float
    timeout: float
    rise: int
    fall: int
    overlay: Overlay | None = None

    @property
    def segment(self) -> SegmentKey:
        return self.vid if self.overlay is None else (self.overlay.kind, self.overlay.vni)

    def __str__(self) -> str:
        where = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        port = f":{self.port}" if self.port else ""
        if self.overlay is not None:
            return f"{self.kind} {where}{port} {self.overlay.kind} {self.overlay.vni} via {self.overlay.vtep}"
        return f"{self.kind} {where}{port} vlan {self.vid}"


@dataclass
class TargetState:
    up: bool = True  # a backend is given the benefit of the doubt until `fall` checks fail
    successes: int = 0  # in a row
    failures: int = 0  # in a row
    last: str = ""  # the last check's outcome
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class HealthChecker:
    def __init__(
        self,
        sock: socket.socket,
        mac: str,
        sources: dict[SegmentKey, list[IPAddress]],
        on_change: Callable[[Target], None] = lambda _t: None,
        endpoint: TunnelEndpoint | None = None,
    ) -> None:
        self.sock = sock
        self.mac = mac
        self._mac = mac_bytes(mac)
        self._link_local = frames.link_local(self._mac)
        self.sources = sources
        self.on_change = on_change
        # This node's tunnel endpoint (members on overlays are checked through it).
        self.endpoint = endpoint or TunnelEndpoint()
        self.tunnel_ports: probes.TunnelPorts = tunnel_ports(self.endpoint)
        self.states: dict[Target, TargetState] = {}
        self._waiters: dict[tuple[object, ...], asyncio.Future[probes.Answer]] = {}
        self._ports: set[int] = set()
        self._seq = random.randrange(1 << 16)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Plain counters, read by the metrics collector.
        self.checks: dict[tuple[str, str], int] = {}  # (kind, result) -> count
        self.neighbor_answers = 0

    @classmethod
    def open(
        cls,
        ifname: str,
        netns: str | None,
        mac: str,
        sources: dict[SegmentKey, list[IPAddress]],
        on_change: Callable[[Target], None] = lambda _t: None,
        endpoint: TunnelEndpoint | None = None,
    ) -> HealthChecker:
        ports = tuple(tunnel_ports(endpoint or TunnelEndpoint()))
        sock = trunk.open_socket(ifname, netns, probes.health_filter(ports))
        return cls(sock, mac, sources, on_change, endpoint)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        for st in self.states.values():
            if st.task is not None:
                st.task.cancel()
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    # -- what to check -----------------------------------------------------

    def source(self, segment: SegmentKey, version: int) -> IPAddress | None:
        """The node's address for checks on a VLAN or overlay segment, or None (cannot check)."""
        for addr in self.sources.get(segment, ()):
            if addr.version == version:
                return addr
        return self._link_local if version == 6 else None

    def local_endpoint(self, vtep: IPAddress) -> IPAddress | None:
        """This node's tunnel endpoint in vtep's family, None if it has none."""
        return self.endpoint.vtep4 if vtep.version == 4 else self.endpoint.vtep6

    def can_check(self, segment: SegmentKey, version: int, overlay: Overlay | None = None) -> bool:
        if self.source(segment, version) is None:
            return False
        if overlay is None:
            return True
        kind_port = self.endpoint.vxlan_port if overlay.kind == "vxlan" else self.endpoint.geneve_port
        return bool(kind_port) and self.local_endpoint(overlay.vtep) is not None

    def _tunnel(self, o: Overlay, *flow: object) -> probes.Tunnel:
        local = self.local_endpoint(o.vtep)
        assert local is not None  # can_check() made sure
        port = self.endpoint.vxlan_port if o.kind == "vxlan" else self.endpoint.geneve_port
        return probes.Tunnel(
            o.kind, o.vni, local, o.vtep, self._mac, mac_bytes(o.hop_mac), port, probes.tunnel_sport(o.vtep, *flow)
        )

    def _send(self, t: Target, frame: bytes, *flow: object) -> None:
        """A check's frame, as it is on a VLAN or encapsulated to the member's endpoint."""
        if t.overlay is not None:
            frame = probes.encapsulate(self._tunnel(t.overlay, t.address, *flow), frame)
        self.sock.send(frame)

    def update(self, targets: set[Target]) -> None:
        """Check exactly these; a target kept keeps its state."""
        for t in list(self.states):
            if t not in targets:
                st = self.states.pop(t)
                if st.task is not None:
                    st.task.cancel()
        for t in targets:
            if t not in self.states:
                st = TargetState()
                self.states[t] = st
                st.task = asyncio.create_task(self._run(t, st), name=f"check {t}")

    def is_down(self, t: Target) -> bool:
        st = self.states.get(t)
        return st is not None and not st.up

    # -- checking ----------------------------------------------------------

    async def _run(self, t: Target, st: TargetState) -> None:
        # Spread the checks of many backends over the interval.
        await asyncio.sleep(random.uniform(0, min(t.delay, 1.0)))
        while True:
            try:
                ok, why = await self._check(t)
            except OSError as exc:  # the trunk went away, a full queue
                ok, why = False, f"not sent: {exc}"
            key = (t.kind, "ok" if ok else "fail")
            self.checks[key] = self.checks.get(key, 0) + 1
            st.last = why
            if ok:
                st.successes, st.failures = st.successes + 1, 0
                flip = not st.up and st.successes >= t.rise
            else:
                st.successes, st.failures = 0, st.failures + 1
                flip = st.up and st.failures >= t.fall
            if flip:
                st.up = not st.up
                log.warning("backend %s is %s: %s", t, "up" if st.up else "down", why)
                self.on_change(t)
            await asyncio.sleep(t.delay)

    async def _check(self, t: Target) -> tuple[bool, str]:
        seg = t.segment
        src = self.source(seg, t.address.version)
        if src is None:
            return False, "no health source on this segment"
        if not self.can_check(seg, t.address.version, t.overlay):
            return False, "no tunnel endpoint of this family and type on this node"
        dst_mac = mac_bytes(t.mac)
        if t.kind == "ping":
            self._seq = (self._seq + 1) & 0xFFFF
            ident, seq = self._seq ^ 0x5844, self._seq
            key: tuple[object, ...] = ("echo", seg, t.address, ident, seq)
            frame = probes.echo_request(self._mac, dst_mac, t.vid, src, t.address, ident, seq)
            answer = await self._ask([key], t, frame, t.timeout)
            return (True, "echo reply") if answer is not None else (False, "no echo reply")

        sport = self._port()
        try:
            proto = 6 if t.kind == "tcp" else 17
            unreachable = ("unreach", seg, t.address, proto, t.port, sport)
            if t.kind == "udp":
                frame = probes.udp_datagram(self._mac, dst_mac, t.vid, src, t.address, sport, t.port)
                answer = await self._ask([unreachable], t, frame, t.timeout, sport)
                if answer is None:
                    return True, "no port unreachable"
                return False, "port unreachable"
            seq = random.randrange(1 << 32)
            reply = ("tcp", seg, t.address, t.port, sport)
            frame = probes.tcp_syn(self._mac, dst_mac, t.vid, src, t.address, sport, t.port, seq)
            answer = await self._ask([reply, unreachable], t, frame, t.timeout, sport)
            if answer is None:
                return False, "no answer to SYN"
            if isinstance(answer, probes.Unreachable):
                return False, f"unreachable (ICMP code {answer.code})"
            assert isinstance(answer, probes.TcpSegment)
            if answer.syn_ack and answer.ack == (seq + 1) & 0xFFFFFFFF:
                rst = probes.tcp_rst(self._mac, dst_mac, t.vid, src, t.address, sport, t.port, (seq + 1) & 0xFFFFFFFF)
                self._send(t, rst, sport)
                return True, "SYN-ACK"
            if answer.rst:
                return False, "connection refused (RST)"
            return False, "unexpected answer to SYN"
        finally:
            self._ports.discard(sport)

    def _port(self) -> int:
        while True:
            p = random.randint(*EPHEMERAL)
            if p not in self._ports:
                self._ports.add(p)
                return p

    async def _ask(
        self, keys: list[tuple[object, ...]], t: Target, frame: bytes, timeout: float, *flow: object
    ) -> probes.Answer | None:
        """Send frame to t; the first answer matching one of keys, or None."""
        fut: asyncio.Future[probes.Answer] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._waiters[k] = fut
        try:
            self._send(t, frame, *flow)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            for k in keys:
                if self._waiters.get(k) is fut:
                    del self._waiters[k]

    # -- answers -----------------------------------------------------------

    def _readable(self) -> None:
        for data, vid, verify in trunk.receive(self.sock):
            self.received(data, vid, verify)

    def received(self, frame: bytes, vid: int = 0, verify_checksum: bool = True) -> None:
        """A frame from the trunk: an answer to a check, or a question for a health source."""
        answer = probes.parse(frame, vid, verify_checksum=verify_checksum, tunnels=self.tunnel_ports)
        if isinstance(answer, probes.Encapsulated):
            self._encapsulated(answer)
        elif answer is not None:
            self._answer(answer, answer.vid)

    def _encapsulated(self, e: probes.Encapsulated) -> None:
        # Only what came to this node's own endpoint, on a type it serves.
        if e.outer_dst != self.local_endpoint(e.outer_src) or self.tunnel_ports.get(e.port) != e.kind:
            return
        self._answer(e.inner, (e.kind, e.vni), e)

    def _ours(self, seg: SegmentKey, addr: IPAddress) -> bool:
        return addr in self.sources.get(seg, ()) or addr == self._link_local

    def _answer(self, a: probes.Answer, seg: SegmentKey, tunnel: probes.Encapsulated | None = None) -> None:
        if isinstance(a, probes.NeighborQuestion):
            self._neighbor(a, seg, tunnel)
            return
        if isinstance(a, probes.TcpSegment):
            if not self._ours(seg, a.dst):
                return
            key: tuple[object, ...] = ("tcp", seg, a.src, a.sport, a.dport)
        elif isinstance(a, probes.EchoReply):
            if not self._ours(seg, a.dst):
                return
            key = ("echo", seg, a.src, a.ident, a.seq)
        elif isinstance(a, probes.Unreachable):
            if not self._ours(seg, a.orig_src):
                return
            key = ("unreach", seg, a.orig_dst, a.orig_proto, a.orig_dport, a.orig_sport)
        else:
            return
        fut = self._waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(a)

    def _neighbor(self, q: probes.NeighborQuestion, seg: SegmentKey, tunnel: probes.Encapsulated | None) -> None:
        """Answer who-has for a health source: a backend asks before it can
        send its answer to a check. Through a tunnel, back the way it came."""
        if not self._ours(seg, q.target) or q.asker.is_unspecified:
            return
        asker_mac = mac_bytes(q.asker_mac)
        vid = q.vid if tunnel is None else 0
        if isinstance(q.target, ipaddress.IPv4Address):
            assert isinstance(q.asker, ipaddress.IPv4Address)
            frame = probes.arp_reply(self._mac, asker_mac, vid, q.target, asker_mac, q.asker)
        else:
            assert isinstance(q.asker, ipaddress.IPv6Address)
            frame = probes.neighbor_advertisement(self._mac, asker_mac, vid, q.target, q.asker, q.target)
        if tunnel is not None:
            back = probes.Tunnel(
                tunnel.kind,
                tunnel.vni,
                tunnel.outer_dst,
                tunnel.outer_src,
                self._mac,
                mac_bytes(tunnel.outer_src_mac),
                tunnel.port,
                probes.tunnel_sport(tunnel.outer_src, q.asker),
                tunnel.vid,
            )
            frame = probes.encapsulate(back, frame)
        try:
            self.sock.send(frame)
            self.neighbor_answers += 1
        except OSError as exc:
            log.warning("answering who-has %s on %s: %s", q.target, seg, exc)


def tunnel_ports(endpoint: TunnelEndpoint) -> probes.TunnelPorts:
    """The UDP ports this node's endpoint takes overlay frames on (none without an endpoint)."""
    if not endpoint.enabled:
        return {}
    ports = {endpoint.vxlan_port: "vxlan", endpoint.geneve_port: "geneve"}
    return {port: kind for port, kind in ports.items() if port}
