"""xdsr's extensions for clients with ids of their own (Octavia's provider
driver): client-chosen ids on every create (admin tokens only, 409 when
taken), `lbn_group` on load balancers, listeners in a fully populated create
naming their pool by id, and every status at once (GET /v2/lbaas/xdsr/statuses)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.apiserver.helpers import (
    PROJECT_A,
    ServerThread,
    create_lb,
    create_listener,
    create_pool,
    eventually,
    observe,
    stored,
    vip,
)
from xdsr.api import schemas as s
from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancerStatus, ObjectStatus
from xdsr.store.docs import dump
from xdsr.store.etcd import EtcdStore

LB = "/v2/lbaas/loadbalancers"
STATUSES = "/v2/lbaas/xdsr/statuses"


def uid() -> str:
    return str(uuid.uuid4())


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def test_admin_chooses_every_id(admin: httpx.Client) -> None:
    lb_id, li_id, pool_id, m_id, hm_id = (uid() for _ in range(5))
    body = {
        "id": lb_id,
        "project_id": PROJECT_A,
        "vip_address": vip(),
        "lbn_group": "edge-1",
        "pools": [
            {
                "id": pool_id,
                "name": "p",
                "protocol": "TCP",
                "lb_algorithm": "SOURCE_IP_PORT",
                "members": [{"id": m_id, "address": "10.1.0.11", "protocol_port": 80}],
                "healthmonitor": {"id": hm_id, "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3},
            }
        ],
        # A listener names its pool by the id given to it in the same request.
        "listeners": [{"id": li_id, "protocol": "TCP", "protocol_port": 80, "default_pool_id": pool_id}],
    }
    got = ok(admin.post(LB, json={"loadbalancer": body}), 201)["loadbalancer"]
    s.LoadBalancerCreatedRoot.model_validate({"loadbalancer": got})
    assert got["id"] == lb_id and got["lbn_group"] == "edge-1" and got["project_id"] == PROJECT_A
    assert got["listeners"][0]["id"] == li_id and got["listeners"][0]["default_pool_id"] == pool_id
    pool = got["pools"][0]
    assert (pool["id"], pool["members"][0]["id"], pool["healthmonitor"]["id"]) == (pool_id, m_id, hm_id)
    assert ok(admin.get(f"{LB}/{lb_id}"))["loadbalancer"]["lbn_group"] == "edge-1"
    assert [x["id"] for x in ok(admin.get(LB, params={"lbn_group": "edge-1"}))["loadbalancers"]] == [lb_id]

    # Children created one by one take their ids too.
    li2, pool2, m2, hm2 = uid(), uid(), uid(), uid()
    assert create_listener(admin, lb_id, port=81, id=li2)["id"] == li2
    assert create_pool(admin, listener_id=li2, id=pool2)["id"] == pool2
    r = admin.post(
        f"/v2/lbaas/pools/{pool2}/members", json={"member": {"id": m2, "address": "10.1.0.12", "protocol_port": 81}}
    )
    assert ok(r, 201)["member"]["id"] == m2
    r = admin.post(
        "/v2/lbaas/healthmonitors",
        json={
            "healthmonitor": {"id": hm2, "pool_id": pool2, "type": "PING", "delay": 5, "timeout": 3, "max_retries": 3}
        },
    )
    assert ok(r, 201)["healthmonitor"]["id"] == hm2
    # The batch update too.
    m3 = uid()
    r = admin.put(
        f"/v2/lbaas/pools/{pool2}/members",
        json={
            "members": [
                {"address": "10.1.0.12", "protocol_port": 81},
                {"id": m3, "address": "10.1.0.13", "protocol_port": 81},
            ]
        },
    )
    assert r.status_code == 202, r.text
    assert {m["id"] for m in ok(admin.get(f"/v2/lbaas/pools/{pool2}/members"))["members"]} == {m2, m3}


def test_taken_ids_conflict(admin: httpx.Client) -> None:
    lb = create_lb(admin, id=(lb_id := uid()))
    r = admin.post(LB, json={"loadbalancer": {"id": lb_id, "vip_address": vip()}})
    assert r.status_code == 409 and "the id is taken" in r.json()["faultstring"], r.text
    li = create_listener(admin, lb["id"], port=80)
    # An id another object of the kind has, in this or another load balancer.
    other = create_lb(admin)
    r = admin.post(
        "/v2/lbaas/listeners",
        json={"listener": {"id": li["id"], "loadbalancer_id": other["id"], "protocol": "TCP", "protocol_port": 80}},
    )
    assert r.status_code == 409 and r.json()["faultstring"].startswith("listener.id: listener "), r.text
    pool = create_pool(admin, loadbalancer_id=lb["id"])
    r = admin.post(
        LB,
        json={
            "loadbalancer": {
                "vip_address": vip(),
                "pools": [{"id": pool["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}],
            }
        },
    )
    assert r.status_code == 409 and "loadbalancer.pools[0].id" in r.json()["faultstring"], r.text
    # The same id twice in one request.
    twice = uid()
    r = admin.post(
        LB,
        json={
            "loadbalancer": {
                "vip_address": vip(),
                "pools": [
                    {"id": twice, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"},
                    {"id": twice, "protocol": "UDP", "lb_algorithm": "ROUND_ROBIN"},
                ],
            }
        },
    )
    assert r.status_code == 400 and "given to two objects" in r.json()["faultstring"], r.text


def test_only_admins_choose_ids(a: httpx.Client, admin: httpx.Client) -> None:
    r = a.post(LB, json={"loadbalancer": {"id": uid(), "vip_address": vip()}})
    assert r.status_code == 403 and r.json()["faultstring"] == "loadbalancer.id: only an admin may choose ids"
    lb = create_lb(a)
    r = a.post(
        "/v2/lbaas/listeners",
        json={"listener": {"id": uid(), "loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80}},
    )
    assert r.status_code == 403, r.text


def test_lbn_group_names(a: httpx.Client, api: ServerThread) -> None:
    for bad in ("Edge", "edge_1", "-edge", "edge-", "", "x" * 64):
        r = a.post(LB, json={"loadbalancer": {"vip_address": vip(), "lbn_group": bad}})
        assert r.status_code == 400 and r.json()["faultstring"].startswith("loadbalancer.lbn_group:"), (bad, r.text)
    lb = create_lb(a, lbn_group="g1")
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None and doc.lbn_group == "g1"
    # Fixed at creation: the operator places a load balancer once.
    r = a.put(f"{LB}/{lb['id']}", json={"loadbalancer": {"lbn_group": "g2"}})
    assert r.status_code == 400 and "unknown attribute" in r.text
    assert create_lb(a)["lbn_group"] is None


def test_every_status_at_once(api: ServerThread, a: httpx.Client, b: httpx.Client, admin: httpx.Client) -> None:
    lb = create_lb(a)
    li = create_listener(a, lb["id"], port=80)
    pool = create_pool(a, listener_id=li["id"])
    m = ok(
        a.post(f"/v2/lbaas/pools/{pool['id']}/members", json={"member": {"address": "10.1.0.11", "protocol_port": 80}}),
        201,
    )["member"]
    other = create_lb(b)

    def mine(c: httpx.Client, **params: Any) -> dict[str, Any]:
        body = ok(c.get(STATUSES, params=params))
        s.SyncStatusesRoot.model_validate(body)
        return {x["id"]: x for x in body["statuses"]}

    pending = mine(a)[lb["id"]]
    assert pending["provisioning_status"] == "PENDING_CREATE" and pending["error"] is None
    assert other["id"] not in mine(a)  # another project's: invisible
    assert set(mine(admin)) >= {lb["id"], other["id"]}
    assert set(mine(admin, loadbalancer_id=lb["id"])) == {lb["id"]}

    observe(api.endpoint, lb["id"], stats={li["id"]: (7, 700)})

    def active() -> None:
        st = mine(a)[lb["id"]]
        assert st["provisioning_status"] == "ACTIVE"
        assert st["listeners"] == [
            {
                "id": li["id"],
                "provisioning_status": "ACTIVE",
                "operating_status": "ONLINE",
                "bytes_in": 700,
                "packets_in": 7,
            }
        ]
        assert st["members"] == [
            {"id": m["id"], "pool_id": pool["id"], "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
        ]
        assert [p["id"] for p in st["pools"]] == [pool["id"]]

    eventually(active)

    # An ERROR carries the operator's reason.
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None

    async def fail() -> None:
        store = EtcdStore(api.endpoint)
        try:
            st = LoadBalancerStatus(
                id=lb["id"],
                observed_generation=doc.generation,
                computed_for=doc.generation,
                provisioning_status="ERROR",
                operating_status="ERROR",
                error="no group of LB nodes can take it",
                listeners={li["id"]: ObjectStatus(provisioning_status="ERROR", operating_status="ERROR")},
            )
            await store.put(keys.status_key(lb["id"]), dump(st))
        finally:
            await store.close()

    api.run(fail())
    eventually(lambda: _assert_error(mine(a)[lb["id"]]))
    r = a.get(STATUSES, params={"name": "x"})
    assert r.status_code == 400 and r.json()["faultstring"].startswith("name:"), r.text


def _assert_error(st: dict[str, Any]) -> None:
    assert st["provisioning_status"] == "ERROR"
    assert st["error"] == "no group of LB nodes can take it"
