"""MAC resolution over the tagged trunk: ARP probes (IPv4) and Neighbor
Solicitations (IPv6) on each member's VLAN, from an agent that has no
address and no VLAN device there."""

from __future__ import annotations

import ipaddress
import socket
import time

from tests.agent.conftest import AgentProcess, services_doc
from tests.conftest import needs_root
from xdsr.agent import frames
from xdsr.dataplane.netns import in_netns
from xdsr.lab import Fabric, wait_until
from xdsr.net.frames import mac_bytes

pytestmark = needs_root

GHOST4 = "10.1.0.99"  # an address nobody has (yet)
GHOST6 = "fd00:1::99"
NEW_MAC = "02:1b:02:00:00:99"


def _addr_flags(fab: Fabric, ns: str, addr: str) -> set[str] | None:
    """Flags of addr on eth0 in ns (tentative, dadfailed, ...); None if absent."""
    out = fab.lab.output(ns, ["ip", "-o", "addr", "show", "dev", "eth0", "to", addr])
    if not out.strip():
        return None
    words = out.split()
    return {w for w in ("tentative", "dadfailed", "deprecated") if w in words}


def _enable_dad(fab: Fabric, ns: str) -> None:
    """Real DAD on the backend's eth0 (the lab turns it off), made to last
    ~2 s: 10 probes 200 ms apart, during which the address is tentative."""
    fab.lab.sysctl(
        ns,
        {
            "net.ipv6.conf.eth0.accept_dad": 1,
            "net.ipv6.conf.eth0.dad_transmits": 10,
            "net.ipv6.neigh.eth0.retrans_time_ms": 200,
        },
    )


def test_members_by_address_are_resolved_and_kept_fresh(fab: Fabric, agent: AgentProcess) -> None:
    t = fab.tenant(0)
    be0, be1, be2 = t.backends
    services = services_doc(fab, by_address=True, protocols=("tcp",))
    for s in services:
        ghost = GHOST6 if ":" in s["vip"] else GHOST4
        s["backends"].append({"id": "ghost", "address": ghost, "vlan": t.backend_vid})
    r = agent.put({"generation": 1, "services": services})
    assert r.status_code == 200, r.text
    reports = {s["id"]: s for s in r.json()["services"]}
    assert {k: (v["active_backends"], v["unresolved"]) for k, v in reports.items()} == {
        "lb1/tcp4": (3, ["ghost"]),
        "lb1/tcp6": (3, ["ghost"]),
    }
    macs = [(b.mac, t.backend_vid, 1) for b in t.backends]
    assert agent.installed() == {(t.vip, 80, "tcp"): macs, (t.vip6, 80, "tcp"): macs}
    assert agent.metric("xdsr_agent_unresolved_members") == 2
    for ipv6 in (False, True):
        res = fab.tcp_client(0, ipv6=ipv6, conns=48, interval_ms=50, duration=0.3)
        assert res.all_ok and set(res.by_backend()) == {b.name for b in t.backends}

    try:
        # The IPv4 ghost appears on be0: resolved and added, without a PUT.
        fab.lab.add_address(be0.netns, "eth0", f"{GHOST4}/24")
        wait_until(lambda: agent.report("lb1/tcp4")["unresolved"] == [], 5, what="IPv4 ghost resolved")
        assert agent.installed()[(t.vip, 80, "tcp")] == [*macs, (be0.mac, t.backend_vid, 1)]

        # The IPv6 ghost appears on be1, which runs real DAD: the address is
        # tentative for ~2 s while the agent keeps soliciting it. A solicitation
        # from '::' would make be1 declare it a duplicate; the agent's (from its
        # link-local address) is ignored until the address is ready, then answered.
        _enable_dad(fab, be1.netns)
        timeouts = agent.metric("xdsr_agent_resolutions_total", family="ipv6", result="timeout")
        fab.lab.add_address(be1.netns, "eth0", f"{GHOST6}/64")
        assert _addr_flags(fab, be1.netns, GHOST6) == {"tentative"}
        wait_until(lambda: agent.report("lb1/tcp6")["unresolved"] == [], 8, what="IPv6 ghost resolved")
        assert _addr_flags(fab, be1.netns, GHOST6) == set(), "the agent's solicitations broke DAD"
        asked_while_tentative = agent.metric("xdsr_agent_resolutions_total", family="ipv6", result="timeout")
        assert asked_while_tentative - timeouts >= 1
        assert agent.installed()[(t.vip6, 80, "tcp")] == [*macs, (be1.mac, t.backend_vid, 1)]
        assert agent.state()["generation"] == 1
        assert agent.metric("xdsr_agent_unresolved_members") == 0

        # be2 gets a new MAC: the periodic refresh (every 2 s here) finds it
        # and the tables follow; traffic reaches be2 at its new MAC.
        fab.lab.run(be2.netns, ["ip", "link", "set", "dev", "eth0", "address", NEW_MAC])
        wait_until(
            lambda: all((NEW_MAC, t.backend_vid, 1) in b for b in agent.installed().values()),
            6,
            what="new MAC in every table",
        )
        assert all((be2.mac, t.backend_vid, 1) not in b for b in agent.installed().values())
        assert agent.metric("xdsr_agent_resolutions_total", result="changed") == 2
        for ipv6 in (False, True):
            res = fab.tcp_client(0, ipv6=ipv6, conns=48, interval_ms=50, duration=0.3)
            assert res.all_ok and be2.name in res.by_backend()
    finally:
        fab.lab.run(be2.netns, ["ip", "link", "set", "dev", "eth0", "address", be2.mac])
        fab.lab.run(be0.netns, ["ip", "addr", "del", f"{GHOST4}/24", "dev", "eth0"], check=False)
        fab.lab.run(be1.netns, ["ip", "addr", "del", f"{GHOST6}/64", "dev", "eth0"], check=False)
        fab.lab.sysctl(be1.netns, {"net.ipv6.conf.eth0.accept_dad": 0})


def test_a_solicitation_from_the_unspecified_address_would_break_dad(fab: Fabric) -> None:
    """The control for the test above: the DAD-style NS (source '::') that
    the agent deliberately does not send makes a tentative address fail DAD."""
    t = fab.tenant(0)
    be = t.backends[2]
    ns, ifname, mac = fab.lbn_trunk(0)
    addr = "fd00:1::98"
    _enable_dad(fab, be.netns)
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((ifname, 0))
    try:
        fab.lab.add_address(be.netns, "eth0", f"{addr}/64")
        assert _addr_flags(fab, be.netns, addr) == {"tentative"}
        dad_probe = frames.neighbor_solicitation(
            mac_bytes(mac), t.backend_vid, ipaddress.IPv6Address(addr), ipaddress.IPv6Address("::")
        )
        sock.send(dad_probe)
        wait_until(lambda: "dadfailed" in (_addr_flags(fab, be.netns, addr) or set()), 3, what="dadfailed")
    finally:
        sock.close()
        fab.lab.run(be.netns, ["ip", "addr", "del", f"{addr}/64", "dev", "eth0"], check=False)
        fab.lab.sysctl(be.netns, {"net.ipv6.conf.eth0.accept_dad": 0})


def test_answers_on_another_vlan_do_not_count(fab: Fabric, agent: AgentProcess) -> None:
    """The same address on the wrong VLAN stays unresolved: answers are
    matched by (VLAN, address), as tenants may reuse addresses."""
    t = fab.tenant(0)
    doc = services_doc(fab, by_address=True, ipv6=False, protocols=("tcp",))
    for m in doc[0]["backends"]:
        m["vlan"] = t.frontend_vid  # nobody on the frontend VLAN has the backends' addresses
    start = time.monotonic()
    r = agent.put({"generation": 1, "services": doc})
    assert r.status_code == 200
    assert r.json()["services"][0]["unresolved"] == [b.name for b in t.backends]
    assert time.monotonic() - start < 3
    assert agent.installed() == {(t.vip, 80, "tcp"): []}
    assert fab.tcp_client(0, conns=2, duration=0.2, connect_timeout=0.5).broken  # no backend: dropped
