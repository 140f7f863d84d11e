"""The L2DSR fabric, without the load balancer.

One fabric (3 LBNs, two tenants with the same backend subnet, IPv4 and
IPv6) serves the read-only tests of this module; tests that change it put
it back as they found it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from xdsr.lab import CensusKey, Fabric, FabricSpec, Lab, LabError, TenantSpec, build_fabric, wait_until
from xdsr.lab.traffic import EventStream, run_tcp_client

from .conftest import PREFIX, leftovers, needs_root, netns_names

pytestmark = needs_root

IPV4, IPV6 = 0x0800, 0x86DD


@pytest.fixture(scope="module")
def fab() -> Iterator[Fabric]:
    spec = FabricSpec(
        n_lbns=3, tenants=(TenantSpec(), TenantSpec()), ipv6=True, prefix=PREFIX, trunk_peer_program="xdp_census"
    )
    with build_fabric(spec) as f:
        yield f
    assert leftovers(f.lab.name) == []


def test_fabric_layout(fab: Fabric) -> None:
    ns, ifname, mac = fab.lbn_trunk(1)
    assert (ifname, mac) == ("trunk", "02:1b:00:00:00:02")
    # An LBN trunk is a plain trunk: no tc program; its switch-side peer has
    # the XDP program that lets the LBN's XDP_TX frames in.
    assert "bpf" not in fab.lab.run(ns, ["tc", "filter", "show", "dev", ifname, "ingress"]).stdout
    assert fab.lab.xdp_prog_id(fab.switch_ns, fab.lbns[1].switch_port) is not None
    assert fab.lab.xdp_prog_id(ns, ifname) is None  # left for the LBN program

    _be_ns, be_mac, vid, ip, name = fab.backend(1, 2)
    assert (vid, ip, name) == (101, "10.1.0.13", "t1-be2")
    assert be_mac == fab.tenant(1).backends[2].mac
    assert {s.name for s in fab.echo_servers.values()} == {b.name for t in fab.tenants for b in t.backends}


def test_backends_have_the_l2dsr_recipe(fab: Fabric) -> None:
    t = fab.tenant(0)
    ns = t.backends[0].netns
    for key, want in {
        "net.ipv4.conf.all.arp_ignore": "1",
        "net.ipv4.conf.all.arp_announce": "2",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
        "net.ipv4.conf.eth0.rp_filter": "0",
    }.items():
        assert fab.lab.read_sysctl(ns, key) == want, key
    lo = fab.lab.output(ns, ["ip", "addr", "show", "dev", "lo"])
    assert f"{t.vip}/32" in lo and f"{t.vip6}/128" in lo
    assert fab.lab.read_sysctl(t.router_ns, "net.ipv4.fib_multipath_hash_policy") == "1"
    assert fab.lab.read_sysctl(t.router_ns, "net.ipv6.fib_multipath_hash_policy") == "1"


def test_routers_reach_their_backends_over_the_vlans(fab: Fabric) -> None:
    """Each router asks every backend of its tenant, by the backend's own
    address (v4 and v6), over the emulated backend VLAN."""
    for t in fab.tenants:
        for b in t.backends:
            for addr in (b.ip, b.ip6):
                assert addr is not None
                r = run_tcp_client(fab.lab, t.router_ns, addr, t.tcp_port, conns=2, interval_ms=20, duration=0.1)
                assert r.all_ok, r
                assert set(r.by_backend()) == {b.name}


def test_tenants_with_identical_addresses_stay_apart(fab: Fabric) -> None:
    a, b = fab.tenant(0), fab.tenant(1)
    assert a.backends[0].ip == b.backends[0].ip == "10.1.0.11"
    for t in (a, b):
        r = run_tcp_client(fab.lab, t.router_ns, "10.1.0.11", t.tcp_port, conns=3, interval_ms=20, duration=0.1)
        assert r.all_ok and set(r.by_backend()) == {t.backends[0].name}
        # ... and the router learned its own tenant's MAC for it.
        neigh = fab.lab.netlink(t.router_ns, lambda ipr: list(ipr.get_neighbours(dst="10.1.0.11")))
        neigh = [n for n in neigh if n.get("NDA_LLADDR")]
        assert {n.get("NDA_LLADDR") for n in neigh} == {t.backends[0].mac}


def _census(fab: Fabric, i: int) -> dict[CensusKey, int]:
    ns, ifname, _ = fab.lbn_trunk(i)
    return fab.lab.xdp_census(ns, ifname)


def _vip_frames(census: dict[CensusKey, int], mac: str, vid: int, proto: int) -> int:
    return census.get(CensusKey(mac, vid, proto), 0)


def test_vip_traffic_reaches_lbn_trunks_tagged_with_the_frontend_vid(fab: Fabric) -> None:
    """The router sends the VIP's traffic to the LBNs' trunk MACs, spread by
    ECMP, tagged with the tenant's frontend VID -- in the frame, where the
    LBN's XDP program will look. (No LB runs: nothing answers.)"""
    for i in range(len(fab.lbns)):
        ns, ifname, _ = fab.lbn_trunk(i)
        fab.lab.attach_xdp(ns, ifname, "xdp_census")
    try:
        flows = 60
        fab.udp_client(0, flows=flows, reply_timeout=0.2)
        fab.udp_client(1, ipv6=True, flows=flows, reply_timeout=0.2)
        a, b = fab.tenant(0), fab.tenant(1)

        def counts(t_vid: int, proto: int) -> list[int]:
            return [_vip_frames(_census(fab, i), fab.lbns[i].mac, t_vid, proto) for i in range(len(fab.lbns))]

        v4 = wait_until(lambda: (c := counts(a.frontend_vid, IPV4)) and sum(c) >= flows and c, timeout=3)
        v6 = wait_until(lambda: (c := counts(b.frontend_vid, IPV6)) and sum(c) >= flows and c, timeout=3)
        assert sum(v4) == flows and all(v4), v4  # every LBN got a share
        assert sum(v6) >= flows and all(v6), v6  # (IPv6 adds the odd ND/MLD frame)

        # Withdrawn from the route, an LBN gets no new flows.
        fab.withdraw_lbn(1)
        try:
            assert fab.route_nexthops(0) == [a.nexthops[0], a.nexthops[2]]
            assert fab.route_nexthops(1, ipv6=True) == [b.nexthops6[0], b.nexthops6[2]]  # type: ignore[index]
            before = counts(a.frontend_vid, IPV4)
            fab.udp_client(0, flows=flows, reply_timeout=0.2)
            after = wait_until(lambda: (c := counts(a.frontend_vid, IPV4)) and sum(c) >= sum(before) + flows and c)
            assert after[1] == before[1]
        finally:
            fab.restore_lbn(1)
        assert fab.route_nexthops(0) == list(a.nexthops)
    finally:
        for i in range(len(fab.lbns)):
            ns, ifname, _ = fab.lbn_trunk(i)
            fab.lab.detach_xdp(ns, ifname)


def test_services_are_plain_data(fab: Fabric) -> None:
    services = fab.services()
    assert len(services) == 2 * 2 * 2  # tenants x families x protocols
    s = next(s for s in services if s.tenant == "t1" and s.proto == "udp" and ":" not in s.vip)
    d = s.to_dict()
    assert d["vip"] == "10.200.1.10" and d["port"] == 5001 and d["vid"] == 11 and d["seg_type"] == "vlan"
    assert [(x["mac"], x["vid"]) for x in d["backends"]] == [(b.mac, 101) for b in fab.tenant(1).backends]
    assert fab.to_dict()["lab"] == fab.lab.name


def test_an_owned_lab_goes_when_the_body_raises() -> None:
    spec = FabricSpec(n_lbns=1, tenants=(TenantSpec(n_backends=1),), prefix=PREFIX, echo_servers=False)
    with pytest.raises(RuntimeError, match="boom"), build_fabric(spec) as f:
        names = set(f.lab.namespaces)
        assert names <= netns_names()
        raise RuntimeError("boom")
    assert not names & netns_names()
    assert leftovers(f.lab.name) == []


def test_a_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Lab] = []
    real_init = Lab.__init__

    def spy_init(self: Lab, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        created.append(self)

    def broken(*args: object, **kwargs: object) -> None:
        raise LabError("injected failure")

    monkeypatch.setattr(Lab, "__init__", spy_init)
    monkeypatch.setattr(Lab, "add_access_port", broken)
    with pytest.raises(LabError, match="injected"):
        build_fabric(FabricSpec(n_lbns=2, prefix=PREFIX, echo_servers=False))
    (lab,) = created
    assert len(lab.namespaces) >= 3  # it got as far as the LBNs and a tenant
    assert leftovers(lab.name) == []


def test_invalid_specs_are_refused_before_anything_is_built() -> None:
    with pytest.raises(ValueError, match="VIDs"):
        build_fabric(FabricSpec(tenants=(TenantSpec(frontend_vid=7), TenantSpec(backend_vid=7)), prefix=PREFIX))
    with pytest.raises(ValueError, match="n_lbns"):
        build_fabric(FabricSpec(n_lbns=0, prefix=PREFIX))


# A user-space stand-in for the LBN (no XDP): every frame for this trunk's
# MAC on the frontend VLAN goes back out rewritten to one backend's MAC and
# VLAN -- the L2DSR rewrite. The kernel hands AF_PACKET the tag out of band
# (auxdata), so the stand-in rebuilds the frame with the tag in it.
_LB_STANDIN = r"""
import json, socket, struct, sys
own, fvid, be_mac, be_vid = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])
SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID, PACKET_OUTGOING = 263, 8, 0x10, 4
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("trunk", 0))
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
print(json.dumps({"event": "ready"}), flush=True)
while True:
    data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
    if addr[2] == PACKET_OUTGOING or data[:6] != own:
        continue
    vid = None
    for level, kind, aux in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA:
            status, _l, _s, _m, _n, tci, _tpid = struct.unpack("IIIHHHH", aux[:20])
            if status & TP_STATUS_VLAN_VALID:
                vid = tci & 0xFFF
    rest = data[12:]
    if vid is None and rest[:2] == b"\x81\x00":
        vid, rest = struct.unpack("!H", rest[2:4])[0] & 0xFFF, rest[4:]
    if vid == fvid:
        s.send(be_mac + own + struct.pack("!HH", 0x8100, be_vid) + rest)
"""


def test_the_l2dsr_path_works_end_to_end_with_a_stand_in_lb(fab: Fabric) -> None:
    """client -> router -(ECMP, frontend VLAN)-> LBN -(backend MAC+VLAN)->
    backend -> router -> client: with a trivial LB on every LBN sending all
    to backend 1, the client's flows and connections are all answered by
    backend 1, and the answers come from the VIP (the UDP client's sockets
    are connected to it)."""
    t = fab.tenant(0)
    be = t.backends[1]
    standins = []
    for i in range(len(fab.lbns)):
        lbn = fab.lbns[i]
        args = [lbn.mac.replace(":", ""), str(t.frontend_vid), be.mac.replace(":", ""), str(be.vid)]
        proc = fab.lab.popen(lbn.netns, [sys.executable, "-c", _LB_STANDIN, *args])
        standins.append((proc, EventStream(proc)))
    try:
        for _, events in standins:
            events.wait_for("ready", 10)
        for ipv6 in (False, True):
            udp = fab.udp_client(0, ipv6=ipv6, flows=30, reply_timeout=2)
            assert udp.by_backend() == {be.name: 30}, [f.error for f in udp.unanswered]
            tcp = fab.tcp_client(0, ipv6=ipv6, conns=10, interval_ms=20, duration=0.3)
            assert tcp.all_ok and tcp.by_backend() == {be.name: 10}, tcp.broken
        # What the LBNs sent into the switch: the rewritten frames, tagged
        # with the backend's VLAN, to the backend's MAC.
        sent = [fab.sent_by_lbn(i) for i in range(len(fab.lbns))]
        assert all(c.get(CensusKey(be.mac, be.vid, IPV4), 0) > 0 for c in sent), sent
        assert sum(c.get(CensusKey(be.mac, be.vid, IPV6), 0) for c in sent) >= 30
    finally:
        for proc, _ in standins:
            fab.lab.stop(proc)
