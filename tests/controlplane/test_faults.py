"""Faults while traffic runs: the operator, an agent and etcd are killed and
restarted one after the other. No configuration is lost, no connection to a
surviving backend breaks, everything converges, and a node that missed
updates while down is brought up to date when it returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
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
    yield from make_env("xcpf", (tenant,), ("a",))


def members(env: Env, which: range | None = None) -> list[dict[str, Any]]:
    bs = env.fab.tenant("a").backends
    return [
        {"address": b.ip, "protocol_port": 0, "segment": {"type": "vlan", "id": b.vid}}
        for i, b in enumerate(bs)
        if which is None or i in which
    ]


def listener(name: str, protocol: str, port: int, pool_members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": protocol,
        "protocol_port": port,
        "default_pool": {
            "name": f"{name}-pool",
            "protocol": protocol,
            "lb_algorithm": "SOURCE_IP_PORT",
            "members": [dict(m, protocol_port=port) for m in pool_members],
        },
    }


def forwarded(env: Env) -> int:
    """Packets every live node has forwarded for any service."""
    total = 0
    for name, agent in env.cluster.agents.items():
        if agent.running:
            total += sum(s["packets"] for s in env.agent_state(name)["services"])
    return total


def traffic_flows(env: Env, packets: int = 150) -> None:
    base = forwarded(env)
    until(lambda: forwarded(env) > base + packets, timeout=20, what="traffic through the LB nodes")


def udp_pool(env: Env, lb_id: str) -> str:
    with env.api() as c:
        pools = c.get("/v2/lbaas/pools", params={"loadbalancer_id": lb_id}).json()["pools"]
    return next(p["id"] for p in pools if p["protocol"] == "UDP")


def test_restarts_under_traffic(env: Env) -> None:
    t = env.fab.tenant("a")
    body = {
        "loadbalancer": {
            "name": "web",
            "vip_address": VIP,
            "vip_segment": {"type": "vlan", "id": t.frontend_vid},
            "listeners": [listener("web", "TCP", t.tcp_port, members(env))],
        }
    }
    with env.api() as c:
        r = c.post("/v2/lbaas/loadbalancers", json=body)
        assert r.status_code == 201, r.text
        lb_id = r.json()["loadbalancer"]["id"]
    env.wait_lb(lb_id)

    session = env.fab.tcp_session("a", conns=30, interval_ms=50)
    try:
        traffic_flows(env)

        # 1. The operator dies. Nodes keep forwarding; a change made
        #    meanwhile waits, and is made real when the operator returns.
        env.cluster.operator.kill()
        traffic_flows(env)
        with env.api() as c:
            r = c.post(
                "/v2/lbaas/listeners",
                json={"listener": {**listener("dns", "UDP", t.udp_port, members(env)), "loadbalancer_id": lb_id}},
            )
            assert r.status_code == 201, r.text
        assert env.wait_lb(lb_id, "PENDING_UPDATE", timeout=5)
        env.cluster.operator.start()
        env.wait_lb(lb_id)
        assert not env.fab.udp_client("a", flows=50).unanswered

        # 2. An agent dies and misses an update: the UDP pool loses a member.
        env.cluster.agents["lbn1"].kill()
        traffic_flows(env)
        pool = udp_pool(env, lb_id)
        with env.api() as c:
            gone = c.get(f"/v2/lbaas/pools/{pool}/members").json()["members"][0]
            assert c.delete(f"/v2/lbaas/pools/{pool}/members/{gone['id']}").status_code == 204
        until(lambda: all(env.agent_state(n)["generation"] > 0 for n in ("lbn0", "lbn2")))
        stale = {
            s.service.key.protocol: len(s.service.backends)
            for s in installed(Dataplane.open(env.cluster.pin_dirs["lbn1"]))
        }
        assert stale["udp"] == 4, "the dead node still holds the old state"
        env.cluster.agents["lbn1"].start()
        env.wait_lb(lb_id)

        def caught_up() -> bool:
            with Dataplane.open(env.cluster.pin_dirs["lbn1"]) as dp:
                return {s.service.key.protocol: len(s.service.backends) for s in installed(dp)}.get("udp") == 3

        until(caught_up, what="lbn1 brought up to date")
        traffic_flows(env)

        # 3. etcd goes away: the API answers 503 and writes nothing; the
        #    nodes keep forwarding; when it returns everything converges.
        env.cluster.etcd.stop()
        with env.api() as c:
            r = c.post(
                "/v2/lbaas/loadbalancers", json={"loadbalancer": {"name": "lost", "vip_address": "203.0.113.99"}}
            )
            assert r.status_code == 503, r.text
        traffic_flows(env)
        env.cluster.etcd.start()
        with env.api() as c:

            def api_back() -> bool:
                try:
                    r = c.get("/v2/lbaas/loadbalancers")
                except httpx.HTTPError:
                    return False
                return r.status_code == 200

            until(api_back, timeout=30, what="API back after etcd")
            names = [lb["name"] for lb in c.get("/v2/lbaas/loadbalancers").json()["loadbalancers"]]
            assert names == ["web"], "nothing half-written during the outage, nothing lost"
            r = c.put(f"/v2/lbaas/loadbalancers/{lb_id}", json={"loadbalancer": {"description": "after etcd"}})
            assert r.status_code == 200, r.text
        env.wait_lb(lb_id)
        traffic_flows(env)
    finally:
        result = session.stop()
    assert not result.broken, [c.error for c in result.broken[:3]]
    assert not result.switched
    gens = {env.agent_state(n)["generation"] for n in env.cluster.agents}
    assert len(gens) == 1, f"the nodes converged on one generation: {gens}"
