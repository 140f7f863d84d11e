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
from xdsr.net.frames import mac_bytes

log = logging.getLogger("xdsr.agent.health")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
EPHEMERAL = (32768, 60999)


@dataclass(frozen=True)
class Target:
    """One check: what, where, how often. Services that check the same
    backend the same way share it."""

    kind: str  # tcp | udp | ping
    vid: int
    mac: str
    address: IPAddress
    port: int  # 0 for ping
    delay: float
    timeout: float
    rise: int
    fall: int

    def __str__(self) -> str:
        where = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        port = f":{self.port}" if self.port else ""
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
        sources: dict[int, list[IPAddress]],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.sock = sock
        self.mac = mac
        self._mac = mac_bytes(mac)
        self._link_local = frames.link_local(self._mac)
        self.sources = sources
        self.on_change = on_change
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
        sources: dict[int, list[IPAddress]],
        on_change: Callable[[], None] = lambda: None,
    ) -> HealthChecker:
        sock = trunk.open_socket(ifname, netns, probes.health_filter())
        return cls(sock, mac, sources, on_change)

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

    def source(self, vid: int, version: int) -> IPAddress | None:
        """The node's address for checks on VLAN vid, or None (cannot check)."""
        for addr in self.sources.get(vid, ()):
            if addr.version == version:
                return addr
        return self._link_local if version == 6 else None

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
                self.on_change()
            await asyncio.sleep(t.delay)

    async def _check(self, t: Target) -> tuple[bool, str]:
        src = self.source(t.vid, t.address.version)
        if src is None:
            return False, "no health source on this VLAN"
        dst_mac = mac_bytes(t.mac)
        if t.kind == "ping":
            self._seq = (self._seq + 1) & 0xFFFF
            ident, seq = self._seq ^ 0x5844, self._seq
            key: tuple[object, ...] = ("echo", t.vid, t.address, ident, seq)
            frame = probes.echo_request(self._mac, dst_mac, t.vid, src, t.address, ident, seq)
            answer = await self._ask([key], frame, t.timeout)
            return (True, "echo reply") if answer is not None else (False, "no echo reply")

        sport = self._port()
        try:
            proto = 6 if t.kind == "tcp" else 17
            unreachable = ("unreach", t.vid, t.address, proto, t.port, sport)
            if t.kind == "udp":
                frame = probes.udp_datagram(self._mac, dst_mac, t.vid, src, t.address, sport, t.port)
                answer = await self._ask([unreachable], frame, t.timeout)
                if answer is None:
                    return True, "no port unreachable"
                return False, "port unreachable"
            seq = random.randrange(1 << 32)
            reply = ("tcp", t.vid, t.address, t.port, sport)
            frame = probes.tcp_syn(self._mac, dst_mac, t.vid, src, t.address, sport, t.port, seq)
            answer = await self._ask([reply, unreachable], frame, t.timeout)
            if answer is None:
                return False, "no answer to SYN"
            if isinstance(answer, probes.Unreachable):
                return False, f"unreachable (ICMP code {answer.code})"
            assert isinstance(answer, probes.TcpSegment)
            if answer.syn_ack and answer.ack == (seq + 1) & 0xFFFFFFFF:
                self.sock.send(
                    probes.tcp_rst(self._mac, dst_mac, t.vid, src, t.address, sport, t.port, (seq + 1) & 0xFFFFFFFF)
                )
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

    async def _ask(self, keys: list[tuple[object, ...]], frame: bytes, timeout: float) -> probes.Answer | None:
        """Send frame; the first answer matching one of keys, or None."""
        fut: asyncio.Future[probes.Answer] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._waiters[k] = fut
        try:
            self.sock.send(frame)
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
            answer = probes.parse(data, vid, verify_checksum=verify)
            if answer is not None:
                self._answer(answer)

    def _ours(self, vid: int, addr: IPAddress) -> bool:
        return addr in self.sources.get(vid, ()) or addr == self._link_local

    def _answer(self, a: probes.Answer) -> None:
        if isinstance(a, probes.NeighborQuestion):
            self._neighbor(a)
            return
        if isinstance(a, probes.TcpSegment):
            if not self._ours(a.vid, a.dst):
                return
            key: tuple[object, ...] = ("tcp", a.vid, a.src, a.sport, a.dport)
        elif isinstance(a, probes.EchoReply):
            if not self._ours(a.vid, a.dst):
                return
            key = ("echo", a.vid, a.src, a.ident, a.seq)
        elif isinstance(a, probes.Unreachable):
            if not self._ours(a.vid, a.orig_src):
                return
            key = ("unreach", a.vid, a.orig_dst, a.orig_proto, a.orig_dport, a.orig_sport)
        else:
            return
        fut = self._waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(a)

    def _neighbor(self, q: probes.NeighborQuestion) -> None:
        """Answer who-has for a health source: a backend asks before it can
        send its answer to a check."""
        if not self._ours(q.vid, q.target) or q.asker.is_unspecified:
            return
        asker_mac = mac_bytes(q.asker_mac)
        try:
            if isinstance(q.target, ipaddress.IPv4Address):
                assert isinstance(q.asker, ipaddress.IPv4Address)
                self.sock.send(probes.arp_reply(self._mac, asker_mac, q.vid, q.target, asker_mac, q.asker))
            else:
                assert isinstance(q.asker, ipaddress.IPv6Address)
                self.sock.send(probes.neighbor_advertisement(self._mac, asker_mac, q.vid, q.target, q.asker, q.target))
            self.neighbor_answers += 1
        except OSError as exc:
            log.warning("answering who-has %s on vlan %d: %s", q.target, q.vid, exc)
