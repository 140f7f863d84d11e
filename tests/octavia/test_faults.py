"""The xdsr API server is down when Octavia calls the driver: Octavia still
answers at once (the driver only queues), the object goes to ERROR once the
agent gives up (the reason is in the driver agent's log), xdsr holds
nothing of it, and the user's retry after the API server is back succeeds:
a failover for a load balancer in ERROR (Octavia's own way to retry one), an
update for a member in ERROR. Real traffic follows."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import needs_root
from tests.octavia.conftest import APPLY_TIMEOUT, BACKEND_SUBNET, FRONTEND_SUBNET, VIP, Env, until

pytestmark = needs_root


def created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201, 202), r.text
    return next(iter(r.json().values()))  # type: ignore[no-any-return]


def served_by(env: Env) -> set[str]:
    result = env.fab.tcp_client("a", conns=30, interval_ms=50, duration=0.3)
    assert not result.broken, result.broken[:2]
    return set(result.by_backend())


def test_apiserver_down_then_retry(env: Env) -> None:
    be = env.fab.tenant("a").backends
    with env.api() as c:
        # --- a load balancer created while xdsr's API server is down ---
        env.cluster.apiserver.stop()
        try:
            body = {
                "name": "while-down",
                "vip_address": VIP,
                "vip_subnet_id": FRONTEND_SUBNET,
                "listeners": [
                    {
                        "name": "tcp-80",
                        "protocol": "TCP",
                        "protocol_port": 80,
                        "default_pool": {
                            "name": "web",
                            "protocol": "TCP",
                            "lb_algorithm": "ROUND_ROBIN",
                            "members": [
                                {"address": b.ip, "protocol_port": 80, "subnet_id": BACKEND_SUBNET} for b in be[:2]
                            ],
                        },
                    }
                ],
            }
            lb = created(c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": body}))
            assert lb["provisioning_status"] == "PENDING_CREATE"
            env.wait_lb(lb["id"], "ERROR", timeout=APPLY_TIMEOUT + 20)
            tree = env.tree(lb["id"])
            assert tree["listeners"][0]["provisioning_status"] == "ERROR"
            log = env.octavia.logs(100_000)
            assert f"loadbalancer_create on load balancer {lb['id']}: ERROR: the xdsr API server is unreachable" in log
        finally:
            env.cluster.apiserver.start()
        with env.xdsr() as x:
            assert x.get(f"/v2/lbaas/loadbalancers/{lb['id']}").status_code == 404

        # The user's retry of a load balancer in ERROR: a failover. It
        # re-applies Octavia's whole load balancer to xdsr.
        assert c.put(f"/v2/lbaas/loadbalancers/{lb['id']}/failover").status_code == 202
        env.wait_lb(lb["id"])
        tree = env.tree(lb["id"])
        assert (tree["provisioning_status"], tree["operating_status"]) == ("ACTIVE", "ONLINE"), tree
        members = tree["listeners"][0]["pools"][0]["members"]
        assert {(m["provisioning_status"], m["operating_status"]) for m in members} == {("ACTIVE", "ONLINE")}
        assert served_by(env) == {be[0].name, be[1].name}

        # --- a member added while it is down: the member ERROR, the rest back to ACTIVE ---
        pool_id = tree["listeners"][0]["pools"][0]["id"]
        env.cluster.apiserver.stop()
        try:
            m = created(
                c.post(
                    f"/v2/lbaas/pools/{pool_id}/members",
                    json={"member": {"address": be[2].ip, "protocol_port": 80, "subnet_id": BACKEND_SUBNET}},
                )
            )
            until(
                lambda: (
                    c.get(f"/v2/lbaas/pools/{pool_id}/members/{m['id']}").json()["member"]["provisioning_status"]
                    == "ERROR"
                ),
                timeout=APPLY_TIMEOUT + 20,
                what="member ERROR",
            )
            env.wait_lb(lb["id"])  # unlocked: the user can act on it
            assert c.get(f"/v2/lbaas/pools/{pool_id}").json()["pool"]["provisioning_status"] == "ACTIVE"
        finally:
            env.cluster.apiserver.start()
        # Traffic meanwhile and after: the LB nodes kept what they had.
        assert served_by(env) == {be[0].name, be[1].name}

        # The retry: an update of the member in ERROR brings it into xdsr.
        created(c.put(f"/v2/lbaas/pools/{pool_id}/members/{m['id']}", json={"member": {"name": "again"}}))
        env.wait_lb(lb["id"])
        got = c.get(f"/v2/lbaas/pools/{pool_id}/members/{m['id']}").json()["member"]
        assert (got["provisioning_status"], got["operating_status"]) == ("ACTIVE", "ONLINE"), got
        assert served_by(env) == {b.name for b in be[:3]}

        assert c.delete(f"/v2/lbaas/loadbalancers/{lb['id']}", params={"cascade": "true"}).status_code == 204
        env.wait_gone(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert lb["id"] not in env.xdsr_ids()
