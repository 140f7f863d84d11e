"""Health checks by one agent on the real fabric: TCP checks (IPv4 from the
node's --health-source, IPv6 from the trunk's link-local address) and ping
checks find exactly the backends whose service is blocked, the backends
learn the health source's MAC from the agent's own ARP answers, and the
agent reports what it sees without touching its tables (the operator
decides, tests/controlplane/test_health.py)."""

from __future__ import annotations

import copy
from typing import Any

from tests.agent.conftest import AgentProcess, services_doc
from tests.conftest import needs_root
from xdsr.lab import Fabric, wait_until

pytestmark = needs_root

CHECK = {"delay": 0.3, "timeout": 0.5, "rise": 1, "fall": 2}


def _block(fab: Fabric, ns: str, on: bool) -> None:
    op = "-I" if on else "-D"
    fab.lab.run(ns, ["iptables", "-w", op, "INPUT", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    fab.lab.run(ns, ["ip6tables", "-w", op, "INPUT", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])


def _no_ping(fab: Fabric, ns: str, on: bool) -> None:
    op = "-I" if on else "-D"
    fab.lab.run(ns, ["iptables", "-w", op, "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"])
    fab.lab.run(ns, ["ip6tables", "-w", op, "INPUT", "-p", "icmpv6", "--icmpv6-type", "echo-request", "-j", "DROP"])


def _views(agent: AgentProcess) -> dict[str, tuple[list[str], list[str]]]:
    return {s["id"]: (s["down"], s["unchecked"]) for s in agent.state()["services"]}


def test_checks_find_the_dead_backends_and_leave_the_tables_alone(fab: Fabric, agent_factory: Any) -> None:
    agent = agent_factory(extra=[a for src in fab.health_sources(0) for a in ("--health-source", src)]).start()
    t = fab.tenant(0)
    be0, be1, _ = t.backends
    services = services_doc(fab, by_address=True)
    for s in services:
        s["health"] = {"type": "tcp" if s["protocol"] == "tcp" else "ping", **CHECK}
    # Members the node cannot check: one given by MAC only, one on a VLAN it
    # has no health source on (IPv4; IPv6 always has the link-local one).
    tcp4 = next(s for s in services if s["id"] == "lb1/tcp4")
    tcp4["backends"] += [
        {"id": "by-mac", "mac": "02:00:00:00:99:01", "vlan": t.backend_vid},
        {"id": "elsewhere", "mac": "02:00:00:00:99:02", "address": "10.9.0.1", "vlan": 999},
    ]
    r = agent.put({"generation": 1, "services": services})
    assert r.status_code == 200, r.text
    before = agent.installed()

    healthy = {s["id"]: ([], []) for s in services}
    healthy["lb1/tcp4"] = ([], ["by-mac", "elsewhere"])
    wait_until(lambda: agent.metric("xdsr_agent_health_checks_total", result="ok") >= 24, 10, what="checks running")
    assert _views(agent) == healthy
    assert agent.metric("xdsr_agent_health_checks_total", result="fail") == 0
    assert agent.metric("xdsr_agent_health_unchecked") == 2
    # be0 asked who has the health source before answering, and believed the agent.
    source = fab.health_sources(0)[0].split("=")[1]
    neigh = fab.lab.run(be0.netns, ["ip", "neigh", "show", source]).stdout
    assert agent.mac in neigh, neigh
    assert agent.metric("xdsr_agent_health_neighbor_answers_total") >= 1

    try:
        _block(fab, be0.netns, True)  # be0's TCP services die (RST)
        _no_ping(fab, be1.netns, True)  # be1 stops answering pings
        dead = copy.deepcopy(healthy)
        for sid in ("lb1/tcp4", "lb1/tcp6"):
            dead[sid] = ([be0.name], dead[sid][1])
        for sid in ("lb1/udp4", "lb1/udp6"):
            dead[sid] = ([be1.name], [])
        wait_until(lambda: _views(agent) == dead, 10, what="be0 (tcp) and be1 (ping) down")
        assert agent.metric("xdsr_agent_health_down") == 4
        assert agent.installed() == before, "the agent reports; only the operator changes the tables"

        _block(fab, be0.netns, False)
        _no_ping(fab, be1.netns, False)
        wait_until(lambda: _views(agent) == healthy, 10, what="both back up")
    finally:
        fab.lab.run(be0.netns, ["iptables", "-F", "INPUT"], check=False)
        fab.lab.run(be0.netns, ["ip6tables", "-F", "INPUT"], check=False)
        fab.lab.run(be1.netns, ["iptables", "-F", "INPUT"], check=False)
        fab.lab.run(be1.netns, ["ip6tables", "-F", "INPUT"], check=False)
