"""Failure containment with real agents: one project's load balancers that
cannot be forwarded (tables larger than the nodes' slot memory, a value the
API never saw) fail alone with their reason, and another project's load
balancers on the same LB nodes are made real and forward traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import needs_root
from tests.controlplane.conftest import VIP, Env, make_env, until
from xdsr.lab import TenantSpec
from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.connect import open_store
from xdsr.store.docs import dump, get_doc

pytestmark = needs_root

BIG_TABLE = 4194301  # 65536 slot chunks each: nine are more than a node's default 32 MiB of slots


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    tenant = TenantSpec(name="a", n_backends=2, vip=VIP, frontend_vid=10, backend_vid=100)
    yield from make_env("xcpc", (tenant,), ("a", "b"))


def create(env: Env, project: str, body: dict[str, Any]) -> str:
    with env.api(project) as c:
        r = c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": body})
        assert r.status_code == 201, r.text
        return str(r.json()["loadbalancer"]["id"])


def b_lb(name: str, vip: str, ports: range, table_size: int | None = None) -> dict[str, Any]:
    """Project b's load balancer: one listener per port, its pool one member."""
    pool: dict[str, Any] = {"protocol": "UDP", "lb_algorithm": "SOURCE_IP_PORT"}
    if table_size is not None:
        pool["table_size"] = table_size
    return {
        "name": name,
        "vip_address": vip,
        "vip_segment": {"type": "vlan", "id": 20},
        "listeners": [
            {
                "protocol": "UDP",
                "protocol_port": p,
                "default_pool": {
                    **pool,
                    "name": f"{name}-{p}",
                    "members": [
                        {
                            "address": "10.9.0.5",
                            "mac_address": "02:00:00:09:00:05",
                            "protocol_port": p,
                            "segment": {"type": "vlan", "id": 200},
                        }
                    ],
                },
            }
            for p in ports
        ],
    }


def status(env: Env, lb_id: str) -> LoadBalancerStatus | None:
    async def read() -> LoadBalancerStatus | None:
        store = open_store(env.cluster.store, component="test")
        try:
            got = await get_doc(store, keys.status_key(lb_id), LoadBalancerStatus)
            return got[0] if got else None
        finally:
            await store.close()

    return asyncio.run(read())


def held(env: Env, lb_id: str) -> dict[str, list[str]]:
    """Node -> the services of the load balancer it forwards."""
    return {
        n: sorted(s["id"] for s in env.agent_state(n)["services"] if s["id"].startswith(lb_id + "/"))
        for n in env.cluster.agents
    }


def test_what_cannot_be_forwarded_fails_alone_and_the_rest_converges(env: Env) -> None:
    t = env.fab.tenant("a")
    # Project b asks for more Maglev table memory than an LB node has.
    hog = create(env, "b", b_lb("hog", "198.51.100.10", range(1000, 1009), BIG_TABLE))
    small = create(env, "b", b_lb("small", "198.51.100.11", range(53, 54)))
    # Project a's load balancer, on the same nodes, with real backends.
    web = create(
        env,
        "a",
        {
            "name": "web",
            "vip_address": VIP,
            "vip_segment": {"type": "vlan", "id": t.frontend_vid},
            "listeners": [
                {
                    "protocol": "TCP",
                    "protocol_port": t.tcp_port,
                    "default_pool": {
                        "name": "web",
                        "protocol": "TCP",
                        "lb_algorithm": "SOURCE_IP_PORT",
                        "members": [
                            {"address": b.ip, "protocol_port": t.tcp_port, "segment": {"type": "vlan", "id": b.vid}}
                            for b in t.backends
                        ],
                    },
                }
            ],
        },
    )
    env.wait_lb(web, project="a")
    env.wait_lb(small, project="b")
    env.wait_lb(hog, "ERROR", project="b")
    st = status(env, hog)
    assert st is not None and "slot chunks" in (st.error or ""), st
    assert all(not s for s in held(env, hog).values()), "never pushed"
    result = env.fab.tcp_client("a", conns=20, interval_ms=20, duration=0.3)
    assert not result.broken, result.broken[:2]

    # A value the API never saw (written into the store by hand, or by an
    # older API server): b's load balancer fails, its rules as they were
    # keep forwarding, and a's next change is made real.
    before = held(env, small)

    async def corrupt() -> None:
        store = open_store(env.cluster.store, component="test")
        try:
            got = await get_doc(store, keys.lb_key(small), LoadBalancer)
            assert got is not None
            lb, rev = got
            pool = lb.pools[0]
            bad = pool.members[0].model_copy(update={"address": "224.0.0.1"})
            lb = lb.model_copy(
                update={"generation": lb.generation + 1, "pools": [pool.model_copy(update={"members": [bad]})]}
            )
            await store.put(keys.lb_key(small), dump(lb), expect=rev)
        finally:
            await store.close()

    asyncio.run(corrupt())
    env.wait_lb(small, "ERROR", project="b")
    st = status(env, small)
    assert st is not None and "address" in (st.error or ""), st
    assert held(env, small) == before and all(before.values())

    with env.api("a") as c:
        r = c.put(f"/v2/lbaas/loadbalancers/{web}", json={"loadbalancer": {"description": "still converging"}})
        assert r.status_code == 200, r.text
    env.wait_lb(web, project="a")
    until(
        lambda: (s := status(env, web)) is not None and s.observed_generation >= 2,
        what="a's change observed",
    )
    result = env.fab.tcp_client("a", conns=20, interval_ms=20, duration=0.3)
    assert not result.broken, result.broken[:2]
