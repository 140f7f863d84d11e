"""An L2DSR test fabric in network namespaces (lbn-paper.md IV.B-C).

    client --- router ==[frontend VLAN]==+                    +== LBN 0 (trunk)
    (per       (per     ==[backend VLAN]=+== switch (bridge) ==+== LBN 1
    tenant)    tenant)                   +== backends 0..N-1   +== LBN 2
                                             (backend VLAN)

* The switch is a VLAN-unaware Linux bridge in its own namespace; the
  kernel has neither VLAN devices nor VLAN filtering, so the hosts' veths
  are 802.1Q access ports made by a tc program (bpf/lab/vlan_access.bpf.c)
  and the bridge simply forwards tagged frames by MAC.
* An LBN has one trunk veth with a static MAC and no tc program: it sees
  every tenant's frames tagged, as the LBN of the paper does on its NIC.
  Its XDP program is the caller's business; the trunk's switch-side peer
  carries an XDP program (xdp_pass by default) so the frames the LBN sends
  back with XDP_TX are not dropped.
* Each tenant has a router (its own namespace, like a VRF, so tenants may
  reuse backend subnets and addresses). It routes the tenant's VIP to the
  LBNs -- one nexthop per LBN on the frontend VLAN, each pinned to that
  LBN's trunk MAC by a permanent neighbour entry because an LBN cannot
  answer ARP there -- as an ECMP route hashed on L4
  (fib_multipath_hash_policy=1), the paper's external router.
* A backend holds the VIP on `lo` with arp_ignore=1, arp_announce=2 and
  rp_filter=0: it accepts frames the LBN rewrote to its MAC and answers the
  client directly, through the router (direct server return).

Everything is described by plain frozen dataclasses on the Fabric, and
`Fabric.services()` gives the load balancer's desired state as plain data.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from types import TracebackType
from typing import Any

from .commands import LabError
from .netns import Lab
from .programs import CensusKey
from .topology import (
    BACKEND_BASE,
    BRIDGE,
    CLIENT_HOST,
    HEALTH_BASE,
    HOST_IF,
    NEXTHOP_BASE,
    ROUTER_BACKEND_IF,
    ROUTER_CLIENT_IF,
    ROUTER_FRONTEND_IF,
    ROUTER_HOST,
    TENANT_NAME_RE,
    TRUNK_IF,
    BackendInfo,
    BackendRef,
    FabricSpec,
    LbnInfo,
    LbnTrunk,
    Service,
    ServiceBackend,
    TenantInfo,
    TenantSpec,
)
from .traffic import (
    EchoServer,
    TcpResult,
    TcpSession,
    UdpResult,
    run_tcp_client,
    run_udp_client,
    start_echos,
    start_tcp_session,
)

log = logging.getLogger("xdsr.lab.fabric")

# -- the fabric ------------------------------------------------------------------


class Fabric:
    """A built fabric: names, addresses and helpers for tests and the demo.

    Closing it closes its lab when it created the lab (build_fabric with no
    `lab`); with a borrowed lab the lab's owner tears everything down."""

    def __init__(
        self,
        lab: Lab,
        spec: FabricSpec,
        switch_ns: str,
        lbns: tuple[LbnInfo, ...],
        tenants: tuple[TenantInfo, ...],
        owns_lab: bool,
    ) -> None:
        self.lab = lab
        self.spec = spec
        self.switch_ns = switch_ns
        self.bridge = BRIDGE
        self.lbns = lbns
        self.tenants = tenants
        self.echo_servers: dict[str, EchoServer] = {}
        self._owns_lab = owns_lab
        self._active: dict[str, set[int]] = {t.name: set(range(len(lbns))) for t in tenants}

    def __enter__(self) -> Fabric:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owns_lab:
            self.lab.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        if self._owns_lab:
            self.lab.close()

    # -- lookups -------------------------------------------------------

    def tenant(self, t: int | str) -> TenantInfo:
        if isinstance(t, int):
            return self.tenants[t]
        for info in self.tenants:
            if info.name == t:
                return info
        raise KeyError(f"no tenant {t!r}")

    def health_sources(self, i: int) -> list[str]:
        """LBN i's health-check source on every tenant's backend VLAN, as
        `xdsr agent --health-source` takes them (IPv6 uses the trunk's
        link-local address)."""
        return [
            f"{t.backend_vid}={_host(ipaddress.IPv4Network(t.backend_subnet), HEALTH_BASE + i)}" for t in self.tenants
        ]

    def lbn_trunk(self, i: int) -> LbnTrunk:
        """(netns, ifname, mac) of LBN i's trunk: where its XDP program goes."""
        lbn = self.lbns[i]
        return LbnTrunk(lbn.netns, lbn.ifname, lbn.mac)

    def backend(self, t: int | str, i: int) -> BackendRef:
        """(netns, mac, vid, ip, name) of tenant t's backend i."""
        b = self.tenant(t).backends[i]
        return BackendRef(b.netns, b.mac, b.vid, b.ip, b.name)

    def services(self) -> list[Service]:
        """The load balancer's desired state: per tenant a TCP and a UDP
        service on the VIP (and on VIP6 with IPv6), every backend in each."""
        out: list[Service] = []
        for t in self.tenants:
            backends = tuple(ServiceBackend(b.name, b.mac, b.vid, b.ip) for b in t.backends)
            for vip in (t.vip, t.vip6):
                if vip is None:
                    continue
                for proto, port in (("tcp", t.tcp_port), ("udp", t.udp_port)):
                    out.append(Service(t.name, vip, port, proto, "vlan", t.frontend_vid, backends))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain data (for the demo's display, or JSON)."""
        return {
            "lab": self.lab.name,
            "switch": {"netns": self.switch_ns, "bridge": self.bridge},
            "lbns": [asdict(x) for x in self.lbns],
            "tenants": [asdict(x) for x in self.tenants],
            "services": [s.to_dict() for s in self.services()],
        }

    def sent_by_lbn(self, i: int) -> dict[CensusKey, int]:
        """Frames LBN i sent into the switch (its XDP_TX output), counted by
        (destination MAC, VID in the frame, EtherType). Needs
        trunk_peer_program="xdp_census" in the spec."""
        if self.spec.trunk_peer_program != "xdp_census":
            raise LabError('sent_by_lbn needs FabricSpec(trunk_peer_program="xdp_census")')
        return self.lab.xdp_census(self.switch_ns, self.lbns[i].switch_port)

    # -- the routers' ECMP route ------------------------------------------

    def active_lbns(self, t: int | str) -> tuple[int, ...]:
        return tuple(sorted(self._active[self.tenant(t).name]))

    def withdraw_lbn(self, i: int, tenant: int | str | None = None) -> None:
        """Take LBN i out of the VIP route of one tenant (all by default), as
        when an LBN's BGP session goes down."""
        self._set_lbn(i, False, tenant)

    def restore_lbn(self, i: int, tenant: int | str | None = None) -> None:
        """Put LBN i back into the VIP route."""
        self._set_lbn(i, True, tenant)

    def _set_lbn(self, i: int, present: bool, tenant: int | str | None) -> None:
        if not 0 <= i < len(self.lbns):
            raise IndexError(f"no LBN {i}")
        targets = self.tenants if tenant is None else (self.tenant(tenant),)
        for t in targets:
            active = self._active[t.name]
            if present:
                active.add(i)
            else:
                active.discard(i)
            _install_vip_routes(self.lab, t, sorted(active))

    def route_nexthops(self, t: int | str, ipv6: bool = False) -> list[str]:
        """The gateways the router's VIP route has now, read from the kernel."""
        info = self.tenant(t)
        if ipv6:
            if info.vip6 is None:
                raise ValueError(f"tenant {info.name} has no IPv6 VIP")
            return self.lab.route_nexthops(info.router_ns, f"{info.vip6}/128")
        return self.lab.route_nexthops(info.router_ns, f"{info.vip}/32")

    # -- traffic -------------------------------------------------------

    def tcp_client(self, t: int | str, *, ipv6: bool = False, **kwargs: Any) -> TcpResult:
        """Run the TCP client from tenant t's client to its VIP (kwargs: see
        traffic.run_tcp_client)."""
        info = self.tenant(t)
        return run_tcp_client(self.lab, info.client_ns, self._vip(info, ipv6), info.tcp_port, **kwargs)

    def udp_client(self, t: int | str, *, ipv6: bool = False, **kwargs: Any) -> UdpResult:
        info = self.tenant(t)
        return run_udp_client(self.lab, info.client_ns, self._vip(info, ipv6), info.udp_port, **kwargs)

    def tcp_session(self, t: int | str, *, ipv6: bool = False, **kwargs: Any) -> TcpSession:
        """Long-lived connections from tenant t's client to its VIP."""
        info = self.tenant(t)
        return start_tcp_session(self.lab, info.client_ns, self._vip(info, ipv6), info.tcp_port, **kwargs)

    @staticmethod
    def _vip(info: TenantInfo, ipv6: bool) -> str:
        if not ipv6:
            return info.vip
        if info.vip6 is None:
            raise ValueError(f"tenant {info.name} has no IPv6 VIP")
        return info.vip6


# -- building ------------------------------------------------------------------


def _host(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, offset: int) -> str:
    addr = subnet.network_address + offset
    if addr not in subnet or addr == subnet.broadcast_address:
        raise ValueError(f"host {offset} does not fit in {subnet}")
    return str(addr)


def _mac(kind: int, a: int, b: int) -> str:
    """Locally administered, unique within a fabric: 02:1b:<kind>:<a>:<b hi>:<b lo>."""
    return f"02:1b:{kind:02x}:{a:02x}:{b >> 8:02x}:{b & 0xFF:02x}"


def _validate(spec: FabricSpec) -> None:
    if not 1 <= spec.n_lbns <= 200:
        raise ValueError("n_lbns must be 1..200")
    if not 1 <= len(spec.tenants) <= 250:
        raise ValueError("between 1 and 250 tenants")
    if spec.trunk_peer_program not in ("xdp_pass", "xdp_census"):
        raise ValueError("trunk_peer_program: xdp_pass or xdp_census")


def _resolve_tenant(t: int, ts: TenantSpec, ipv6: bool, n_lbns: int, lab: Lab) -> TenantInfo:
    """Fill the defaults of one tenant and compute every name and address."""
    name = ts.name or f"t{t}"
    if not TENANT_NAME_RE.match(name):
        raise ValueError(f"tenant name {name!r}: a letter, then up to 7 letters/digits")
    fvid = ts.frontend_vid if ts.frontend_vid is not None else 10 + t
    bvid = ts.backend_vid if ts.backend_vid is not None else 100 + t
    if not 1 <= ts.n_backends <= 200:
        raise ValueError(f"tenant {name}: n_backends must be 1..200")
    front = ipaddress.IPv4Network(f"10.255.{t}.0/24")
    client_net = ipaddress.IPv4Network(f"172.16.{t}.0/24")
    be_net = ipaddress.IPv4Network(ts.backend_subnet)
    front6 = ipaddress.IPv6Network(f"fd00:ff:{t:x}::/64") if ipv6 else None
    client_net6 = ipaddress.IPv6Network(f"fd00:ac10:{t:x}::/64") if ipv6 else None
    be_net6 = ipaddress.IPv6Network(ts.backend_subnet6) if ipv6 else None
    vip = str(ipaddress.IPv4Address(ts.vip or f"10.200.{t}.10"))
    vip6 = str(ipaddress.IPv6Address(ts.vip6 or f"fd00:200:{t:x}::10")) if ipv6 else None

    backends = tuple(
        BackendInfo(
            tenant=name,
            index=j,
            name=f"{name}-be{j}",
            netns=lab.netns_name(f"{name}-be{j}"),
            ifname=HOST_IF,
            mac=_mac(2, t, j),
            vid=bvid,
            ip=_host(be_net, BACKEND_BASE + j),
            ip6=_host(be_net6, BACKEND_BASE + j) if be_net6 else None,
            switch_port=f"{name}-b{j}",
        )
        for j in range(ts.n_backends)
    )
    return TenantInfo(
        index=t,
        name=name,
        frontend_vid=fvid,
        backend_vid=bvid,
        vip=vip,
        vip6=vip6,
        tcp_port=ts.tcp_port,
        udp_port=ts.udp_port,
        client_ns=lab.netns_name(f"{name}-cl"),
        client_ip=_host(client_net, CLIENT_HOST),
        client_ip6=_host(client_net6, CLIENT_HOST) if client_net6 else None,
        router_ns=lab.netns_name(f"{name}-rt"),
        router_client_ip=_host(client_net, ROUTER_HOST),
        router_client_ip6=_host(client_net6, ROUTER_HOST) if client_net6 else None,
        router_frontend_if=ROUTER_FRONTEND_IF,
        router_frontend_mac=_mac(1, t, 1),
        router_frontend_ip=_host(front, ROUTER_HOST),
        router_frontend_ip6=_host(front6, ROUTER_HOST) if front6 else None,
        router_backend_if=ROUTER_BACKEND_IF,
        router_backend_mac=_mac(1, t, 2),
        router_backend_ip=_host(be_net, ROUTER_HOST),
        router_backend_ip6=_host(be_net6, ROUTER_HOST) if be_net6 else None,
        nexthops=tuple(_host(front, NEXTHOP_BASE + i) for i in range(n_lbns)),
        nexthops6=tuple(_host(front6, NEXTHOP_BASE + i) for i in range(n_lbns)) if front6 else None,
        backend_subnet=str(be_net),
        backend_subnet6=str(be_net6) if be_net6 else None,
        backends=backends,
    )


def _install_vip_routes(lab: Lab, t: TenantInfo, lbn_indexes: Sequence[int]) -> None:
    lab.set_multipath_route(t.router_ns, f"{t.vip}/32", [(t.nexthops[i], t.router_frontend_if) for i in lbn_indexes])
    if t.vip6 is not None and t.nexthops6 is not None:
        lab.set_multipath_route(
            t.router_ns, f"{t.vip6}/128", [(t.nexthops6[i], t.router_frontend_if) for i in lbn_indexes]
        )


_ROUTER_SYSCTLS: dict[str, object] = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.forwarding": 1,
    # Replies from the backends arrive on the backend port with the VIP as
    # source, which this router routes out of the frontend port.
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    # ECMP on the 5-tuple, so different connections reach different LBNs.
    "net.ipv4.fib_multipath_hash_policy": 1,
}
_ROUTER_SYSCTLS6: dict[str, object] = {
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv6.fib_multipath_hash_policy": 1,
}
_BACKEND_SYSCTLS: dict[str, object] = {
    # The L2DSR backend recipe: never answer ARP for the VIP on lo, never
    # use it as an ARP source, accept requests whatever the reverse path.
    "net.ipv4.conf.all.arp_ignore": 1,
    "net.ipv4.conf.all.arp_announce": 2,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv4.conf.default.arp_ignore": 1,
    "net.ipv4.conf.default.arp_announce": 2,
}


def build_fabric(spec: FabricSpec | None = None, lab: Lab | None = None) -> Fabric:
    """Build the fabric of `spec` in `lab` (a new lab, owned by the returned
    Fabric, when None). Use as `with build_fabric(spec) as fab:`.

    If building fails, a lab created here is torn down before the error
    propagates; a borrowed lab is left to its owner."""
    spec = spec or FabricSpec()
    _validate(spec)
    owns = lab is None
    lab = lab or Lab(spec.prefix)
    try:
        return _build(lab, spec, owns)
    except BaseException:
        if owns:
            _close_quietly(lab)
        raise


def _close_quietly(lab: Lab) -> None:
    try:
        lab.close()
    except Exception:
        log.exception("lab %s: teardown after a failed build", lab.name)


def _build(lab: Lab, spec: FabricSpec, owns: bool) -> Fabric:
    t0 = time.monotonic()
    tenants = tuple(_resolve_tenant(t, ts, spec.ipv6, spec.n_lbns, lab) for t, ts in enumerate(spec.tenants))
    names = [t.name for t in tenants]
    if len(set(names)) != len(names):
        raise ValueError(f"tenant names must be unique: {names}")
    vids = [v for t in tenants for v in (t.frontend_vid, t.backend_vid)]
    if len(set(vids)) != len(vids) or not all(1 <= v <= 4094 for v in vids):
        raise ValueError(f"VIDs must be distinct and 1..4094: {vids}")

    # The switch and the LBNs never need IPv6: disabling it keeps their
    # link-local chatter out of the frames a test counts.
    sw = lab.add_netns("sw", ipv6=False)
    lab.add_bridge(sw, BRIDGE)
    fdb: list[tuple[str, str]] = []

    def plug(host_ns: str, host_if: str, mac: str, port: str) -> None:
        lab.add_veth(sw, port, host_ns, host_if, mac_b=mac)
        lab.enslave(sw, port, BRIDGE)
        fdb.append((mac, port))

    lbns: list[LbnInfo] = []
    for i in range(spec.n_lbns):
        ns = lab.add_netns(f"lbn{i}", ipv6=False)
        info = LbnInfo(i, ns, TRUNK_IF, _mac(0, 0, i + 1), f"lbn{i}")
        plug(ns, TRUNK_IF, info.mac, info.switch_port)
        lab.attach_xdp(sw, info.switch_port, spec.trunk_peer_program)
        lbns.append(info)

    for t in tenants:
        cl = lab.add_netns(f"{t.name}-cl", ipv6=spec.ipv6)
        rt_sysctls = dict(_ROUTER_SYSCTLS)
        if spec.ipv6:
            rt_sysctls.update(_ROUTER_SYSCTLS6)
        rt = lab.add_netns(f"{t.name}-rt", ipv6=spec.ipv6, sysctls=rt_sysctls)
        assert cl == t.client_ns and rt == t.router_ns

        # client <-> router: a plain point-to-point link, no VLAN.
        lab.add_veth(cl, HOST_IF, rt, ROUTER_CLIENT_IF)
        lab.add_address(cl, HOST_IF, f"{t.client_ip}/24")
        lab.add_address(rt, ROUTER_CLIENT_IF, f"{t.router_client_ip}/24")
        lab.set_route(cl, "default", via=t.router_client_ip)
        if t.client_ip6 and t.router_client_ip6:
            lab.add_address(cl, HOST_IF, f"{t.client_ip6}/64")
            lab.add_address(rt, ROUTER_CLIENT_IF, f"{t.router_client_ip6}/64")
            lab.set_route(cl, "default", via=t.router_client_ip6)

        # router -> switch: one access port per VLAN.
        plug(rt, ROUTER_FRONTEND_IF, t.router_frontend_mac, f"{t.name}-rf")
        plug(rt, ROUTER_BACKEND_IF, t.router_backend_mac, f"{t.name}-rb")
        lab.add_access_port(rt, ROUTER_FRONTEND_IF, t.frontend_vid)
        lab.add_access_port(rt, ROUTER_BACKEND_IF, t.backend_vid)
        be_plen = ipaddress.IPv4Network(t.backend_subnet).prefixlen
        be_plen6 = ipaddress.IPv6Network(t.backend_subnet6).prefixlen if t.backend_subnet6 else 64
        lab.add_address(rt, ROUTER_FRONTEND_IF, f"{t.router_frontend_ip}/24")
        lab.add_address(rt, ROUTER_BACKEND_IF, f"{t.router_backend_ip}/{be_plen}")
        if t.router_frontend_ip6 and t.router_backend_ip6:
            lab.add_address(rt, ROUTER_FRONTEND_IF, f"{t.router_frontend_ip6}/64")
            lab.add_address(rt, ROUTER_BACKEND_IF, f"{t.router_backend_ip6}/{be_plen6}")
        # The LBNs have no address on the frontend VLAN and cannot answer
        # ARP/ND there: pin each nexthop to its LBN's trunk MAC.
        for i, lbn in enumerate(lbns):
            lab.add_neighbour(rt, ROUTER_FRONTEND_IF, t.nexthops[i], lbn.mac)
            if t.nexthops6:
                lab.add_neighbour(rt, ROUTER_FRONTEND_IF, t.nexthops6[i], lbn.mac)
        _install_vip_routes(lab, t, range(len(lbns)))

        for b in t.backends:
            ns = lab.add_netns(f"{t.name}-be{b.index}", ipv6=spec.ipv6, sysctls=_BACKEND_SYSCTLS)
            assert ns == b.netns
            plug(ns, HOST_IF, b.mac, b.switch_port)
            lab.add_access_port(ns, HOST_IF, b.vid)
            lab.sysctl(
                ns,
                {
                    f"net.ipv4.conf.{HOST_IF}.rp_filter": 0,
                    f"net.ipv4.conf.{HOST_IF}.arp_ignore": 1,
                    f"net.ipv4.conf.{HOST_IF}.arp_announce": 2,
                },
            )
            lab.add_address(ns, HOST_IF, f"{b.ip}/{be_plen}")
            lab.add_address(ns, "lo", f"{t.vip}/32")
            lab.set_route(ns, "default", via=t.router_backend_ip)
            if b.ip6 and t.vip6 and t.router_backend_ip6:
                lab.add_address(ns, HOST_IF, f"{b.ip6}/{be_plen6}")
                lab.add_address(ns, "lo", f"{t.vip6}/128")
                lab.set_route(ns, "default", via=t.router_backend_ip6)

    # Every MAC is known: static entries spare the flooding a host that
    # never transmits (an LBN before its program runs) would otherwise cost.
    lab.add_fdb_static(sw, fdb)
    fabric = Fabric(lab, spec, sw, tuple(lbns), tenants, owns)
    log.info("fabric %s: network built in %.2fs", lab.name, time.monotonic() - t0)

    if spec.echo_servers:
        servers = start_echos(lab, [(b.netns, b.name, t.tcp_port, t.udp_port) for t in tenants for b in t.backends])
        fabric.echo_servers = {s.name: s for s in servers}
    log.info("fabric %s: ready in %.2fs", lab.name, time.monotonic() - t0)
    return fabric
