"""Health monitors, end to end: the LB nodes check the members from their
own address on the members' VLAN (`--health-source`), the operator takes a
member most nodes find down out of every node's table (weight 0: the other
members' flows stay put) and brings it back when it answers again; the
members' operating status says which are down. A backend whose service is
gone is emulated with iptables in its namespace (RST for TCP, ICMP port
unreachable for UDP), exactly what a dead server's kernel answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import needs_root
from tests.controlplane.conftest import VIP, Env, make_env, until
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import installed
from xdsr.lab import TenantSpec

pytestmark = needs_root


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    tenant = TenantSpec(name="a", n_backends=4, vip=VIP, frontend_vid=10, backend_vid=100)
    yield from make_env("xcph", (tenant,), ("a",), health_sources=True)


def _listener(env: Env, protocol: str, port: int, monitor: str) -> dict[str, Any]:
    t = env.fab.tenant("a")
    return {
        "name": protocol.lower(),
        "protocol": protocol,
        "protocol_port": port,
        "default_pool": {
            "name": protocol.lower(),
            "protocol": protocol,
            "lb_algorithm": "SOURCE_IP_PORT",
            "members": [
                {"address": b.ip, "protocol_port": port, "segment": {"type": "vlan", "id": b.vid}} for b in t.backends
            ],
            "healthmonitor": {"type": monitor, "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2},
        },
    }


def _member_status(env: Env, lb_id: str) -> dict[tuple[str, str], str]:
    """(listener protocol, member address) -> operating status."""
    with env.api() as c:
        tree = c.get(f"/v2/lbaas/loadbalancers/{lb_id}/status").json()["statuses"]["loadbalancer"]
    return {
        (li["name"], m["address"]): m["operating_status"]
        for li in tree["listeners"]
        for p in li["pools"]
        for m in p["members"]
    }


def _weights(env: Env) -> set[tuple[str, tuple[int, ...]]]:
    """What every node's tables hold: (protocol, weights in member order)."""
    out = set()
    for pin in env.cluster.pin_dirs.values():
        with Dataplane.open(pin) as dp:
            for s in installed(dp):
                out.add((s.service.key.protocol, tuple(b.weight for b in s.service.backends)))
    return out


def _block(env: Env, ns: str, on: bool) -> None:
    t = env.fab.tenant("a")
    op = "-I" if on else "-D"
    env.fab.lab.run(ns, ["iptables", "-w", op, "INPUT", "-p", "tcp", "--dport", str(t.tcp_port),
                         "-j", "REJECT", "--reject-with", "tcp-reset"])  # fmt: skip
    env.fab.lab.run(ns, ["iptables", "-w", op, "INPUT", "-p", "udp", "--dport", str(t.udp_port),
                         "-j", "REJECT", "--reject-with", "icmp-port-unreachable"])  # fmt: skip


def test_a_dead_member_leaves_every_table_and_comes_back(env: Env) -> None:
    t = env.fab.tenant("a")
    be = t.backends
    body = {
        "loadbalancer": {
            "name": "checked",
            "vip_address": VIP,
            "vip_segment": {"type": "vlan", "id": t.frontend_vid},
            "listeners": [_listener(env, "TCP", t.tcp_port, "TCP"), _listener(env, "UDP", t.udp_port, "UDP-CONNECT")],
        }
    }
    with env.api() as c:
        r = c.post("/v2/lbaas/loadbalancers", json=body)
        assert r.status_code == 201, r.text
        lb_id = r.json()["loadbalancer"]["id"]
    env.wait_lb(lb_id)
    everyone = {(p, b.ip): "ONLINE" for p in ("tcp", "udp") for b in be}
    until(lambda: _member_status(env, lb_id) == everyone, what="every member checked and ONLINE")
    assert _weights(env) == {("tcp", (1, 1, 1, 1)), ("udp", (1, 1, 1, 1))}

    try:
        # be1's services die: every node sees it, the operator takes it out.
        _block(env, be[1].netns, True)
        dead = {**everyone, ("tcp", be[1].ip): "ERROR", ("udp", be[1].ip): "ERROR"}
        until(lambda: _member_status(env, lb_id) == dead, timeout=20, what="be1 reported down")
        until(lambda: _weights(env) == {("tcp", (1, 0, 1, 1)), ("udp", (1, 0, 1, 1))}, what="be1 out of every table")
        tcp = env.fab.tcp_client("a", conns=48, interval_ms=50, duration=0.3)
        assert tcp.all_ok, [c.error for c in tcp.broken[:3]]
        assert set(tcp.by_backend()) == {be[0].name, be[2].name, be[3].name}
        udp = env.fab.udp_client("a", flows=60)
        assert not udp.unanswered and be[1].name not in udp.by_backend()

        # It answers again: back in, traffic reaches it.
        _block(env, be[1].netns, False)
        until(lambda: _member_status(env, lb_id) == everyone, timeout=20, what="be1 back ONLINE")
        until(lambda: _weights(env) == {("tcp", (1, 1, 1, 1)), ("udp", (1, 1, 1, 1))}, what="be1 back in the tables")
        assert be[1].name in env.fab.tcp_client("a", conns=48, interval_ms=50, duration=0.3).by_backend()

        # Every member failing at once says more about the checks than the
        # members: the tables keep them all (fail open), the status tells.
        for b in be:
            _block(env, b.netns, True)
        all_dead = {k: "ERROR" for k in everyone}
        until(lambda: _member_status(env, lb_id) == all_dead, timeout=20, what="every member reported down")
        # (Members fail one by one, so the tables went through fewer members.)
        until(lambda: _weights(env) == {("tcp", (1, 1, 1, 1)), ("udp", (1, 1, 1, 1))}, what="every member kept")
    finally:
        for b in be:
            env.fab.lab.run(b.netns, ["iptables", "-w", "-F", "INPUT"], check=False)
        with env.api() as c:
            c.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": True})
