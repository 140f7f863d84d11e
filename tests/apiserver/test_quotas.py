"""Per-project quotas, as Octavia has them (plus xdsr's table slots): the
quota endpoints, who may read and set them, and a 403 with Octavia's message
on every path that creates objects — one at a time, fully populated,
batch member updates and the admin's tree — also when creates race."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.apiserver.helpers import (
    PROJECT_A,
    PROJECT_B,
    TOKEN_B,
    ServerThread,
    client,
    create_lb,
    create_listener,
    create_member,
    create_pool,
    vip,
)

Q = "/v2/lbaas/quotas"
LB = "/v2/lbaas/loadbalancers"
UNLIMITED = {"loadbalancer": -1, "listener": -1, "pool": -1, "member": -1, "healthmonitor": -1}


def limits(**set_: int) -> dict[str, Any]:
    return {"quota": set_}


@pytest.fixture
def quota(admin: httpx.Client) -> Iterator[Any]:
    """quota(project, **limits) sets a project's quotas; all reset afterwards."""
    touched: set[str] = set()

    def set_(project: str, **values: int) -> dict[str, Any]:
        touched.add(project)
        r = admin.put(f"{Q}/{project}", json=limits(**values))
        assert r.status_code == 202, r.text
        return r.json()["quota"]  # type: ignore[no-any-return]

    yield set_
    for project in touched:
        assert admin.delete(f"{Q}/{project}").status_code == 204


def in_use(c: httpx.Client, kind: str = "loadbalancers") -> int:
    return len(c.get(f"/v2/lbaas/{kind}").json()[kind])


def met(r: httpx.Response, resource: str) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["faultstring"].startswith(f"Quota has been met for resources: {resource}"), r.text


def test_defaults_are_unlimited_and_shown_under_both_names(a: httpx.Client) -> None:
    r = a.get(f"{Q}/defaults")
    assert r.status_code == 200
    got = r.json()["quota"]
    assert {k: got[k] for k in UNLIMITED} == UNLIMITED
    assert got["l7policy"] == got["l7rule"] == got["table_slots"] == -1
    assert got["load_balancer"] == got["loadbalancer"] and got["health_monitor"] == got["healthmonitor"]


def test_who_may_read_and_set(a: httpx.Client, admin: httpx.Client, quota: Any) -> None:
    quota(PROJECT_A, loadbalancer=50, member=7)
    mine = a.get(f"{Q}/{PROJECT_A}")
    assert mine.status_code == 200
    assert mine.json()["quota"]["loadbalancer"] == 50 and mine.json()["quota"]["member"] == 7
    assert mine.json()["quota"]["pool"] == -1  # not set: the default
    assert a.get(f"{Q}/{PROJECT_B}").status_code == 403
    assert a.put(f"{Q}/{PROJECT_A}", json=limits(loadbalancer=99)).status_code == 403
    assert a.delete(f"{Q}/{PROJECT_A}").status_code == 403
    assert a.put(f"{Q}/defaults", json=limits(loadbalancer=1)).status_code == 403
    # A project lists its own quota; the admin every project's.
    assert [q["project_id"] for q in a.get(Q).json()["quotas"]] == [PROJECT_A]
    quota(PROJECT_B, pool=3)
    assert {q["project_id"] for q in admin.get(Q).json()["quotas"]} == {PROJECT_A, PROJECT_B}
    with client_none(a) as anon:
        assert anon.get(f"{Q}/defaults").status_code == 401


def client_none(c: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=str(c.base_url), timeout=10)


def test_values_are_checked_and_null_means_default(admin: httpx.Client, quota: Any) -> None:
    for bad in (-2, 2_000_000_001, "5", 1.5, True):
        r = admin.put(f"{Q}/{PROJECT_A}", json=limits(member=bad))  # type: ignore[arg-type]
        assert r.status_code == 400 and "member" in r.json()["faultstring"], (bad, r.text)
    assert admin.put(f"{Q}/{PROJECT_A}", json=limits(colour=1)).status_code == 400
    quota(PROJECT_A, member=5, pool=2)
    r = admin.put(f"{Q}/{PROJECT_A}", json={"quota": {"member": None}})
    assert r.status_code == 202 and r.json()["quota"]["member"] == -1 and r.json()["quota"]["pool"] == 2
    # The older names Octavia also takes.
    r = admin.put(f"{Q}/{PROJECT_A}", json={"quota": {"load_balancer": 4, "health_monitor": 3}})
    assert r.json()["quota"]["loadbalancer"] == 4 and r.json()["quota"]["healthmonitor"] == 3


def test_load_balancers(b: httpx.Client, quota: Any) -> None:
    quota(PROJECT_B, loadbalancer=in_use(b) + 1)
    create_lb(b)
    met(b.post(LB, json={"loadbalancer": {"vip_address": vip()}}), "Load Balancer")


def test_children_one_at_a_time(b: httpx.Client, quota: Any) -> None:
    lb = create_lb(b)
    listeners, pools = in_use(b, "listeners"), in_use(b, "pools")
    quota(
        PROJECT_B,
        listener=listeners + 1,
        pool=pools + 1,
        member=in_use_members(b) + 2,
        healthmonitor=in_use(b, "healthmonitors"),
    )
    li = create_listener(b, lb["id"], 80)
    met(
        b.post(
            "/v2/lbaas/listeners",
            json={"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 81}},
        ),
        "Listener",
    )
    pool = create_pool(b, listener_id=li["id"])
    met(
        b.post(
            "/v2/lbaas/pools",
            json={"pool": {"loadbalancer_id": lb["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}},
        ),
        "Pool",
    )
    create_member(b, pool["id"], "192.0.2.1")
    create_member(b, pool["id"], "192.0.2.2")
    members = f"/v2/lbaas/pools/{pool['id']}/members"
    met(b.post(members, json={"member": {"address": "192.0.2.3", "protocol_port": 80}}), "Member")
    # A batch update that would add one more: refused, nothing changed.
    batch = [{"address": f"192.0.2.{i}", "protocol_port": 80} for i in (1, 2, 3)]
    met(b.put(members, json={"members": batch}), "Member")
    assert len(b.get(members).json()["members"]) == 2
    # One that replaces one by another keeps the count: accepted.
    assert b.put(members, json={"members": [batch[0], batch[2]]}).status_code == 202
    hm = {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}
    met(b.post("/v2/lbaas/healthmonitors", json={"healthmonitor": hm}), "Health Monitor")


def in_use_members(c: httpx.Client) -> int:
    return sum(
        len(c.get(f"/v2/lbaas/pools/{p['id']}/members").json()["members"])
        for p in c.get("/v2/lbaas/pools").json()["pools"]
    )


def populated(n_members: int, table_size: int | None = None) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "name": "p",
        "protocol": "TCP",
        "lb_algorithm": "ROUND_ROBIN",
        "members": [{"address": f"192.0.2.{i + 1}", "protocol_port": 80} for i in range(n_members)],
    }
    if table_size:
        pool["table_size"] = table_size
    return {"vip_address": vip(), "listeners": [{"protocol": "TCP", "protocol_port": 80, "default_pool": pool}]}


def test_fully_populated_create_and_tree(b: httpx.Client, admin: httpx.Client, quota: Any) -> None:
    quota(PROJECT_B, member=in_use_members(b) + 3)
    met(b.post(LB, json={"loadbalancer": populated(4)}), "Member")
    r = b.post(LB, json={"loadbalancer": populated(3)})
    assert r.status_code == 201, r.text
    # The admin's tree endpoint: creating or growing a tree counts too.
    tree = populated(1)
    lb_id = str(uuid.uuid4())
    body = {"loadbalancer": {**tree, "id": lb_id, "project_id": PROJECT_B}}
    ids(body["loadbalancer"])
    met(admin.put(f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree", json=body), "Member")
    quota(PROJECT_B, member=in_use_members(b) + 1)
    r = admin.put(f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree", json=body)
    assert r.status_code == 201, r.text
    pool = body["loadbalancer"]["listeners"][0]["default_pool"]
    pool["members"].append({"id": str(uuid.uuid4()), "address": "192.0.2.99", "protocol_port": 80})
    met(admin.put(f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree", json=body), "Member")


def ids(obj: dict[str, Any]) -> None:
    """Give every object of a tree an id."""
    obj.setdefault("id", str(uuid.uuid4()))
    for li in obj.get("listeners", []):
        ids(li)
        if "default_pool" in li:
            ids(li["default_pool"])
    for m in obj.get("members", []):
        ids(m)


def test_table_slots(b: httpx.Client, quota: Any) -> None:
    # 101 (the smallest default) + 997.
    lb = create_lb(b)
    quota(PROJECT_B, table_slots=current_slots(b) + 1100)
    li = create_listener(b, lb["id"], 80)
    create_pool(b, listener_id=li["id"], table_size=997)
    li2 = create_listener(b, lb["id"], 81)
    pool = create_pool(b, loadbalancer_id=lb["id"], table_size=101)  # no listener yet: no table
    r = b.put(f"/v2/lbaas/listeners/{li2['id']}", json={"listener": {"default_pool_id": pool["id"]}})
    assert r.status_code == 200, r.text  # 997 + 101 = 1098
    met(b.put(f"/v2/lbaas/pools/{pool['id']}", json={"pool": {"table_size": 4194301}}), "Table Slots")
    li3 = create_listener(b, lb["id"], 82)
    met(
        b.post(
            "/v2/lbaas/pools",
            json={"pool": {"listener_id": li3["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}},
        ),
        "Table Slots",
    )


def current_slots(c: httpx.Client) -> int:
    from xdsr.maglev import default_table_size

    pools = {p["id"]: p for p in c.get("/v2/lbaas/pools").json()["pools"]}
    total = 0
    for li in c.get("/v2/lbaas/listeners").json()["listeners"]:
        p = pools.get(li["default_pool_id"] or "")
        if p:
            total += p["table_size"] or default_table_size(len(p["members"]))
    return total


def test_concurrent_creates_stay_within_the_quota(api: ServerThread, quota: Any) -> None:
    with client(api, TOKEN_B) as b:
        before = in_use(b)
        quota(PROJECT_B, loadbalancer=before + 3)

    def one(_: int) -> int:
        with client(api, TOKEN_B) as c:
            return c.post(LB, json={"loadbalancer": {"vip_address": vip()}}).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(one, range(10)))
    assert sorted(codes) == [201] * 3 + [403] * 7
    with client(api, TOKEN_B) as b:
        assert in_use(b) == before + 3


def test_over_a_lowered_quota_a_project_may_still_shrink(b: httpx.Client, quota: Any) -> None:
    lb = create_lb(b)
    pool = create_pool(b, loadbalancer_id=lb["id"])
    m1 = create_member(b, pool["id"], "192.0.2.1")
    create_member(b, pool["id"], "192.0.2.2")
    quota(PROJECT_B, loadbalancer=0, member=0)
    assert b.put(f"{LB}/{lb['id']}", json={"loadbalancer": {"name": "renamed"}}).status_code == 200
    assert b.delete(f"/v2/lbaas/pools/{pool['id']}/members/{m1['id']}").status_code == 204
    met(
        b.post(f"/v2/lbaas/pools/{pool['id']}/members", json={"member": {"address": "192.0.2.9", "protocol_port": 80}}),
        "Member",
    )


def test_defaults_apply_and_delete_resets(b: httpx.Client, admin: httpx.Client, quota: Any) -> None:
    n = in_use(b)
    try:
        r = admin.put(f"{Q}/defaults", json=limits(loadbalancer=n))
        assert r.status_code == 202 and r.json()["quota"]["loadbalancer"] == n
        assert b.get(f"{Q}/{PROJECT_B}").json()["quota"]["loadbalancer"] == n
        met(b.post(LB, json={"loadbalancer": {"vip_address": vip()}}), "Load Balancer")
        quota(PROJECT_B, loadbalancer=-1)  # the project's own beats the default
        create_lb(b)
        assert admin.delete(f"{Q}/{PROJECT_B}").status_code == 204
        met(b.post(LB, json={"loadbalancer": {"vip_address": vip()}}), "Load Balancer")
    finally:
        admin.put(f"{Q}/defaults", json={"quota": {"loadbalancer": None}})
    create_lb(b)
