"""One Octavia change is one write of xdsr's document: through the real
Octavia API, a fully populated create, then updates, a batch update and a
delete of members, a monitor and a listener changed — each becomes exactly
one new generation of the load balancer in xdsr (the API server bumps the
generation on every write of the document, and writes nothing when nothing
changes), and only the objects the change touched carry it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.apiserver.helpers import stored
from tests.conftest import needs_root
from tests.octavia.conftest import BACKEND_SUBNET, FRONTEND_SUBNET, Env
from xdsr.model.loadbalancer import LoadBalancer

pytestmark = needs_root

VIP = "203.0.113.30"  # no traffic here: any address of the frontend subnet


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201, 202), r.text
    return next(iter(r.json().values()))  # type: ignore[no-any-return]


def doc(env: Env, lb_id: str) -> LoadBalancer:
    got = stored(env.cluster.etcd.endpoint, lb_id)
    assert got is not None, f"xdsr has no load balancer {lb_id}"
    return got


def generations(d: LoadBalancer) -> dict[str, int]:
    out = {li.id: li.generation for li in d.listeners}
    for p in d.pools:
        out[p.id] = p.generation
        out.update({m.id: m.generation for m in p.members})
    out.update({h.id: h.generation for h in d.healthmonitors})
    return out


def test_each_octavia_change_is_one_xdsr_generation(env: Env) -> None:
    be = env.fab.tenant("a").backends
    with env.api() as c:
        body = {
            "name": "one-write",
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
                        "healthmonitor": {"type": "TCP", "delay": 2, "timeout": 1, "max_retries": 2},
                    },
                }
            ],
        }
        lb = ok(c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": body}))
        lb_id = lb["id"]
        env.wait_lb(lb_id)
        # The whole tree, created in one write.
        first = doc(env, lb_id)
        assert first.generation == 1
        assert set(generations(first).values()) == {1}
        listener_id = first.listeners[0].id
        pool_id = first.pools[0].id
        m0, m1 = (m.id for m in first.pools[0].members)
        hm_id = first.healthmonitors[0].id

        def change(method: str, path: str, json: dict[str, Any] | None = None) -> set[str]:
            """Make one change through Octavia; the objects xdsr stamped with its one new generation."""
            before = doc(env, lb_id)
            r = c.request(method, path, json=json)
            assert r.status_code in (200, 201, 202, 204), r.text
            env.wait_lb(lb_id)
            after = doc(env, lb_id)
            assert after.generation == before.generation + 1, (method, path, before.generation, after.generation)
            return {k for k, g in generations(after).items() if g == after.generation}

        members = f"/v2/lbaas/pools/{pool_id}/members"
        assert change("PUT", f"{members}/{m0}", {"member": {"weight": 0}}) == {m0}
        new = {"address": be[2].ip, "protocol_port": 80, "subnet_id": BACKEND_SUBNET}
        stamped = change("POST", members, {"member": new})
        (m2,) = stamped
        assert m2 not in (m0, m1)
        assert change("PUT", f"/v2/lbaas/healthmonitors/{hm_id}", {"healthmonitor": {"delay": 3}}) == {hm_id}
        assert change("PUT", f"/v2/lbaas/listeners/{listener_id}", {"listener": {"name": "renamed"}}) == {listener_id}
        assert change("DELETE", f"{members}/{m1}") == set()
        assert m1 not in generations(doc(env, lb_id))
        # Octavia's batch update: the pool's members become exactly these (m2 goes, m0 changes, one is new).
        batch = [
            {"address": be[0].ip, "protocol_port": 80, "subnet_id": BACKEND_SUBNET, "weight": 2},
            {"address": be[3].ip, "protocol_port": 80, "subnet_id": BACKEND_SUBNET},
        ]
        stamped = change("PUT", members, {"members": batch})
        assert m0 in stamped and len(stamped) == 2
        assert m2 not in generations(doc(env, lb_id))

        assert c.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"}).status_code == 204
        env.wait_gone(f"/v2/lbaas/loadbalancers/{lb_id}")
