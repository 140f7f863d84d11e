"""xdsr's whole-tree endpoint (PUT/GET /v2/lbaas/xdsr/loadbalancers/{id}/tree):
admin only; one PUT is one write of the store, validated as a create is;
only the objects that changed get the new generation (so only they show
PENDING_*); a PUT that changes nothing writes nothing."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest

from tests.apiserver.helpers import PROJECT_A, ServerThread, create_lb, observe, run, stored, vip
from xdsr.model import keys
from xdsr.store.etcd import EtcdStore

LB = "/v2/lbaas/loadbalancers"


def uid() -> str:
    return str(uuid.uuid4())


def tree_path(lb_id: str) -> str:
    return f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree"


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def fault(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["faultstring"])


def a_tree() -> dict[str, Any]:
    """A fully populated load balancer in which every object has its id."""
    lb, li, pool, m1, m2, hm = (uid() for _ in range(6))
    return {
        "id": lb,
        "project_id": PROJECT_A,
        "name": "web",
        "vip_address": vip(),
        "listeners": [{"id": li, "name": "l80", "protocol": "TCP", "protocol_port": 80, "default_pool_id": pool}],
        "pools": [
            {
                "id": pool,
                "name": "p",
                "protocol": "TCP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [
                    {"id": m1, "address": "10.1.0.11", "protocol_port": 80},
                    {"id": m2, "address": "10.1.0.12", "protocol_port": 80},
                ],
                "healthmonitor": {"id": hm, "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3},
            }
        ],
    }


def revision(api: ServerThread) -> int:
    """The store's revision: it grows by one with every write, of any key."""

    async def body() -> int:
        store = EtcdStore(api.endpoint)
        try:
            return (await store.list(keys.LB_PREFIX))[1]
        finally:
            await store.close()

    return run(body())


def put(c: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return c.put(tree_path(body["id"]), json={"loadbalancer": body})


def generations(api: ServerThread, lb_id: str) -> dict[str, int]:
    doc = stored(api.endpoint, lb_id)
    assert doc is not None
    out = {doc.id: doc.generation}
    out.update({li.id: li.generation for li in doc.listeners})
    for p in doc.pools:
        out[p.id] = p.generation
        out.update({m.id: m.generation for m in p.members})
    out.update({h.id: h.generation for h in doc.healthmonitors})
    return out


def statuses(c: httpx.Client, lb_id: str) -> dict[str, str]:
    (st,) = ok(c.get("/v2/lbaas/xdsr/statuses", params={"loadbalancer_id": lb_id}))["statuses"]
    out = {st["id"]: st["provisioning_status"]}
    for key in ("listeners", "pools", "members", "healthmonitors"):
        out.update({e["id"]: e["provisioning_status"] for e in st[key]})
    return out


def test_only_admins(a: httpx.Client, admin: httpx.Client) -> None:
    body = a_tree()
    assert fault(put(a, body), 403) == "only an admin may read or replace a whole tree"
    lb = create_lb(a)
    assert a.get(tree_path(lb["id"])).status_code == 403
    assert admin.get(tree_path(lb["id"])).status_code == 200
    assert httpx.get(admin.base_url.join(tree_path(lb["id"]))).status_code == 401


def test_create_then_replace_in_one_write_each(api: ServerThread, admin: httpx.Client) -> None:
    body = a_tree()
    lb_id = body["id"]
    before = revision(api)
    created = ok(put(admin, body), 201)["loadbalancer"]
    assert revision(api) == before + 1  # one write
    pool = body["pools"][0]
    assert [p["id"] for p in created["pools"]] == [pool["id"]]
    assert {m["id"] for m in created["pools"][0]["members"]} == {m["id"] for m in pool["members"]}
    assert created["pools"][0]["healthmonitor"]["id"] == pool["healthmonitor"]["id"]
    assert created["listeners"][0]["default_pool_id"] == pool["id"]
    assert created["project_id"] == PROJECT_A
    # GET: the same tree, in one read.
    assert ok(admin.get(tree_path(lb_id)))["loadbalancer"]["pools"] == created["pools"]
    observe(api.endpoint, lb_id)
    gen0 = generations(api, lb_id)
    assert set(gen0.values()) == {1}

    # The same tree again: nothing written, nothing pending.
    before = revision(api)
    ok(put(admin, copy.deepcopy(body)))
    assert revision(api) == before
    assert generations(api, lb_id) == gen0

    # One member's weight, a member gone, a member new, the listener renamed,
    # a second listener and pool: one write, one generation.
    m1, m2 = pool["members"]
    m1["weight"] = 0
    pool["members"] = [m1, {"id": uid(), "address": "10.1.0.13", "protocol_port": 80}]
    body["listeners"][0]["name"] = "renamed"
    udp_pool = {"id": uid(), "protocol": "UDP", "lb_algorithm": "SOURCE_IP_PORT", "members": []}
    body["pools"].append(udp_pool)
    body["listeners"].append({"id": uid(), "protocol": "UDP", "protocol_port": 53, "default_pool_id": udp_pool["id"]})
    before = revision(api)
    replaced = ok(put(admin, body))["loadbalancer"]
    assert revision(api) == before + 1
    gen1 = generations(api, lb_id)
    assert gen1[lb_id] == 2 and m2["id"] not in gen1
    li80, li53 = (li["id"] for li in body["listeners"])
    changed = {m1["id"], pool["members"][1]["id"], li80, li53, udp_pool["id"]}
    assert {k for k, g in gen1.items() if g == 2} == changed | {lb_id}
    assert {k for k, g in gen1.items() if g == 1} == {pool["id"], pool["healthmonitor"]["id"]}
    # Only what changed is pending; what did not stays ACTIVE.
    st = statuses(admin, lb_id)
    assert st[m1["id"]] == "PENDING_UPDATE" and st[body["listeners"][0]["id"]] == "PENDING_UPDATE"
    assert st[pool["members"][1]["id"]] == "PENDING_CREATE" and st[udp_pool["id"]] == "PENDING_CREATE"
    assert st[pool["id"]] == "ACTIVE" and st[pool["healthmonitor"]["id"]] == "ACTIVE"
    assert st[lb_id] == "PENDING_UPDATE"
    assert {li["name"] for li in replaced["listeners"]} == {"renamed", ""}
    # Kept from creation: created_at of what stayed; updated_at of what changed.
    li0 = next(li for li in replaced["listeners"] if li["id"] == body["listeners"][0]["id"])
    assert li0["created_at"] == created["listeners"][0]["created_at"] and li0["updated_at"] is not None

    # Everything but the load balancer itself removed: one write.
    body["listeners"], body["pools"] = [], []
    before = revision(api)
    emptied = ok(put(admin, body))["loadbalancer"]
    assert revision(api) == before + 1
    assert emptied["listeners"] == [] and emptied["pools"] == []
    assert stored(api.endpoint, lb_id).healthmonitors == []  # type: ignore[union-attr]


def test_invalid_trees_are_refused_as_a_create_is(api: ServerThread, admin: httpx.Client) -> None:
    def same_as_create(body: dict[str, Any]) -> str:
        """The PUT's 400 is the create's, word for word; nothing is written."""
        before = revision(api)
        text = fault(put(admin, body), 400)
        assert fault(admin.post(LB, json={"loadbalancer": body}), 400) == text
        assert revision(api) == before
        return text

    body = a_tree()
    body["listeners"][0]["protocol"] = "HTTP"
    assert same_as_create(body).startswith("loadbalancer.listeners[0].protocol: HTTP is not supported")
    body = a_tree()
    body["pools"][0]["members"][0]["protocol_port"] = 8080
    assert "does not translate ports" in same_as_create(body)
    body = a_tree()
    body["pools"][0]["session_persistence"] = {"type": "SOURCE_IP"}
    assert "session persistence is not supported" in same_as_create(body)
    body = a_tree()
    body["pools"][0]["healthmonitor"]["timeout"] = 9
    assert "exceeds delay" in same_as_create(body)

    # What only a tree asks: every object named, ids not another's, the VIP kept.
    body = a_tree()
    del body["pools"][0]["members"][1]["id"]
    assert fault(put(admin, body), 400).startswith("loadbalancer.pools[0].members[1].id: every object")
    body = a_tree()
    assert fault(admin.put(tree_path(uid()), json={"loadbalancer": body}), 400).startswith("loadbalancer.id:")
    first = a_tree()
    ok(put(admin, first), 201)
    body = a_tree()
    body["pools"][0]["id"] = first["pools"][0]["id"]
    body["listeners"][0]["default_pool_id"] = first["pools"][0]["id"]
    assert "the id is taken" in fault(put(admin, body), 409)
    first["vip_address"] = vip()
    assert "it cannot change" in fault(put(admin, first), 409)


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_unknown_load_balancer(admin: httpx.Client, method: str) -> None:
    if method == "GET":
        assert admin.get(tree_path(uid())).status_code == 404
    else:
        assert fault(admin.put(tree_path("not-a-uuid"), json={"loadbalancer": a_tree()}), 400).startswith(
            "loadbalancer_id:"
        )
