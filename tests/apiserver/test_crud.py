"""Every object through plain HTTP: Octavia's paths, wrappers, attribute
names and status values; the status tree and stats; list filters; 404s."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from tests.apiserver.helpers import (
    PROJECT_A,
    ServerThread,
    create_lb,
    create_listener,
    create_member,
    create_pool,
    eventually,
    observe,
    stored,
    vip,
)
from xdsr.api import schemas as s

LB = "/v2/lbaas/loadbalancers"
LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
HMS = "/v2/lbaas/healthmonitors"


def ok(r: httpx.Response, model: type[BaseModel] | None = None, status: int = 200) -> dict[str, Any]:
    """The body of a successful response, checked against its documented model."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    if model is not None:
        model.model_validate(body)  # every attribute present, nothing unknown
    return body


def test_versions_for_discovery(a: httpx.Client) -> None:
    versions = ok(a.get("/"), s.Versions)["versions"]
    assert versions[0]["id"] == "v2.0" and versions[-1]["status"] == "CURRENT"
    assert versions[-1]["links"] == [{"href": f"{api_url(a)}/v2", "rel": "self"}]
    assert a.get("/v2").json() == "v2"
    # The version documents need no token; everything else does.
    assert httpx.get(api_url(a)).status_code == 200


def test_loadbalancer_lifecycle(api: ServerThread, a: httpx.Client) -> None:
    address = vip()
    body = {
        "name": "web",
        "description": "front",
        "vip_address": address,
        "vip_subnet_id": "5f4c5a4e-4a0b-4c40-9f3b-57b1d1d2b8a1",
        "vip_segment": {"type": "vlan", "id": 10},
        "tags": ["blue"],
    }
    lb = ok(a.post(LB, json={"loadbalancer": body}), s.LoadBalancerCreatedRoot, 201)["loadbalancer"]
    assert lb["provisioning_status"] == "PENDING_CREATE" and lb["operating_status"] == "OFFLINE"
    assert lb["vip_address"] == address and lb["vip_segment"] == {"type": "vlan", "id": 10}
    assert lb["vip_subnet_id"] == body["vip_subnet_id"] and lb["project_id"] == PROJECT_A
    assert lb["provider"] == "xdsr" and lb["listeners"] == [] and lb["pools"] == [] and lb["tags"] == ["blue"]
    assert len(lb["created_at"]) == len("2024-01-01T00:00:00") and lb["updated_at"] is None

    # Read-your-writes: the GET right after the POST finds it.
    got = ok(a.get(f"{LB}/{lb['id']}"), s.LoadBalancerRoot)["loadbalancer"]
    assert got == lb
    listed = ok(a.get(LB), s.LoadBalancersRoot)
    assert lb["id"] in [x["id"] for x in listed["loadbalancers"]] and listed["loadbalancers_links"] == []

    # The operator reports generation 1 made real: ACTIVE.
    observe(api.endpoint, lb["id"])
    assert eventually(lambda: _status(a, lb["id"], "ACTIVE"))["operating_status"] == "ONLINE"

    upd = ok(a.put(f"{LB}/{lb['id']}", json={"loadbalancer": {"name": "web2", "admin_state_up": False}}))
    assert upd["loadbalancer"]["name"] == "web2" and upd["loadbalancer"]["admin_state_up"] is False
    assert upd["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE" and upd["loadbalancer"]["updated_at"]
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None and doc.generation == 2 and doc.pending == "UPDATE"
    # The same update again changes nothing: no new generation.
    ok(a.put(f"{LB}/{lb['id']}", json={"loadbalancer": {"name": "web2"}}))
    assert stored(api.endpoint, lb["id"]).generation == 2  # type: ignore[union-attr]
    observe(api.endpoint, lb["id"])
    eventually(lambda: _status(a, lb["id"], "ACTIVE"))

    # DELETE answers at once; the operator removes it later.
    assert a.delete(f"{LB}/{lb['id']}").status_code == 204
    assert ok(a.get(f"{LB}/{lb['id']}"))["loadbalancer"]["provisioning_status"] == "PENDING_DELETE"
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None and doc.deleting and doc.pending == "DELETE"
    assert a.delete(f"{LB}/{lb['id']}").status_code == 204  # idempotent
    r = a.put(f"{LB}/{lb['id']}", json={"loadbalancer": {"name": "late"}})
    assert r.status_code == 409 and "being deleted" in r.json()["faultstring"]


def _status(c: httpx.Client, lb_id: str, wanted: str) -> dict[str, Any]:
    lb: dict[str, Any] = c.get(f"{LB}/{lb_id}").json()["loadbalancer"]
    assert lb["provisioning_status"] == wanted, lb["provisioning_status"]
    return lb


def test_children_lifecycle_status_tree_and_stats(api: ServerThread, a: httpx.Client) -> None:
    lb = create_lb(a)
    li = ok(
        a.post(
            LISTENERS,
            json={"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 443, "name": "tls"}},
        ),
        s.ListenerRoot,
        201,
    )["listener"]
    assert li["loadbalancers"] == [{"id": lb["id"]}] and li["connection_limit"] == -1
    assert li["provisioning_status"] == "PENDING_CREATE" and li["default_pool_id"] is None

    pool = ok(
        a.post(
            POOLS,
            json={
                "pool": {
                    "listener_id": li["id"],
                    "protocol": "TCP",
                    "lb_algorithm": "SOURCE_IP_PORT",
                    "table_size": 251,
                }
            },
        ),
        s.PoolRoot,
        201,
    )["pool"]
    assert pool["listeners"] == [{"id": li["id"]}] and pool["loadbalancers"] == [{"id": lb["id"]}]
    assert pool["table_size"] == 251 and pool["members"] == []
    assert ok(a.get(f"{LISTENERS}/{li['id']}"))["listener"]["default_pool_id"] == pool["id"]

    m1 = ok(
        a.post(
            f"{POOLS}/{pool['id']}/members",
            json={
                "member": {
                    "address": "192.0.2.11",
                    "protocol_port": 443,
                    "weight": 3,
                    "mac_address": "02:AA:00:00:00:01",
                    "segment": {"type": "vlan", "id": 100},
                }
            },
        ),
        s.MemberRoot,
        201,
    )["member"]
    assert m1["mac_address"] == "02:aa:00:00:00:01" and m1["segment"] == {"type": "vlan", "id": 100}
    m2 = create_member(a, pool["id"], "2001:db8::12", 443)
    assert m2["mac_address"] is None and m2["segment"] is None

    hm = ok(
        a.post(
            HMS,
            json={"healthmonitor": {"pool_id": pool["id"], "type": "HTTP", "delay": 5, "timeout": 2, "max_retries": 3}},
        ),
        s.HealthMonitorRoot,
        201,
    )["healthmonitor"]
    assert hm["pools"] == [{"id": pool["id"]}] and hm["http_method"] == "GET" and hm["url_path"] == "/"
    assert hm["expected_codes"] == "200" and hm["max_retries_down"] == 3
    assert ok(a.get(f"{POOLS}/{pool['id']}"), s.PoolRoot)["pool"]["healthmonitor_id"] == hm["id"]

    # Nothing observed yet: the whole tree is PENDING_CREATE.
    tree = ok(a.get(f"{LB}/{lb['id']}/status"), s.StatusRoot)["statuses"]["loadbalancer"]
    assert tree["provisioning_status"] == "PENDING_CREATE"
    tpool = tree["listeners"][0]["pools"][0]
    assert tpool["id"] == pool["id"] and tpool["health_monitor"]["id"] == hm["id"]
    assert {m["id"] for m in tpool["members"]} == {m1["id"], m2["id"]}
    assert all(m["provisioning_status"] == "PENDING_CREATE" for m in tpool["members"])

    observe(api.endpoint, lb["id"], stats={li["id"]: (10, 1500)})
    tree = eventually(lambda: _tree(a, lb["id"], "ACTIVE"))
    assert tree["listeners"][0]["pools"][0]["members"][0]["operating_status"] == "ONLINE"
    stats = ok(a.get(f"{LB}/{lb['id']}/stats"), s.StatsRoot)["stats"]
    assert stats == {
        "bytes_in": 1500,
        "bytes_out": 0,
        "active_connections": 0,
        "total_connections": 0,
        "request_errors": 0,
        "packets_in": 10,
    }
    assert ok(a.get(f"{LISTENERS}/{li['id']}/stats"), s.StatsRoot)["stats"]["bytes_in"] == 1500

    # A changed member is PENDING_UPDATE, a new one PENDING_CREATE, the rest stay ACTIVE.
    upd = ok(a.put(f"{POOLS}/{pool['id']}/members/{m1['id']}", json={"member": {"weight": 0, "mac_address": None}}))
    assert upd["member"]["weight"] == 0 and upd["member"]["mac_address"] is None
    assert upd["member"]["provisioning_status"] == "PENDING_UPDATE"
    m3 = create_member(a, pool["id"], "192.0.2.13", 443)
    assert m3["provisioning_status"] == "PENDING_CREATE"
    assert ok(a.get(f"{POOLS}/{pool['id']}/members/{m2['id']}"))["member"]["provisioning_status"] == "ACTIVE"
    assert ok(a.get(f"{LB}/{lb['id']}"))["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"

    # Updates of every kind.
    assert (
        ok(a.put(f"{LISTENERS}/{li['id']}", json={"listener": {"name": "x", "timeout_client_data": 1000}}))["listener"][
            "timeout_client_data"
        ]
        == 1000
    )
    assert (
        ok(a.put(f"{POOLS}/{pool['id']}", json={"pool": {"lb_algorithm": "ROUND_ROBIN", "table_size": None}}))["pool"][
            "table_size"
        ]
        is None
    )
    hm2 = ok(a.put(f"{HMS}/{hm['id']}", json={"healthmonitor": {"url_path": "/healthz", "expected_codes": "200-204"}}))
    assert hm2["healthmonitor"]["url_path"] == "/healthz"

    # Deletes: detach the pool first (deleting it attached detaches it too:
    # test_operability.py); members and monitor go with the pool.
    assert a.delete(f"{POOLS}/{pool['id']}/members/{m3['id']}").status_code == 204
    assert a.get(f"{POOLS}/{pool['id']}/members/{m3['id']}").status_code == 404
    assert a.delete(f"{HMS}/{hm['id']}").status_code == 204
    assert ok(a.get(f"{POOLS}/{pool['id']}"))["pool"]["healthmonitor_id"] is None
    assert (
        ok(a.put(f"{LISTENERS}/{li['id']}", json={"listener": {"default_pool_id": None}}))["listener"][
            "default_pool_id"
        ]
        is None
    )
    assert a.delete(f"{POOLS}/{pool['id']}").status_code == 204
    assert a.get(f"{POOLS}/{pool['id']}/members/{m1['id']}").status_code == 404
    assert a.delete(f"{LISTENERS}/{li['id']}").status_code == 204
    assert a.get(f"{LISTENERS}/{li['id']}").status_code == 404
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None and doc.listeners == [] and doc.pools == [] and doc.healthmonitors == []
    assert ok(a.get(f"{LB}/{lb['id']}"))["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert a.delete(f"{LB}/{lb['id']}").status_code == 204  # no children left: no cascade needed


def _tree(c: httpx.Client, lb_id: str, wanted: str) -> dict[str, Any]:
    tree: dict[str, Any] = c.get(f"{LB}/{lb_id}/status").json()["statuses"]["loadbalancer"]
    assert tree["provisioning_status"] == wanted
    return tree


def test_operator_errors_and_cascade_delete(api: ServerThread, a: httpx.Client) -> None:
    lb = create_lb(a)
    li = create_listener(a, lb["id"], 53, "UDP")
    create_listener(a, lb["id"], 53, "TCP")  # the same port for another protocol is fine
    create_pool(a, "UDP", listener_id=li["id"])
    observe(api.endpoint, lb["id"], provisioning="ERROR", operating="ERROR")
    assert eventually(lambda: _status(a, lb["id"], "ERROR"))["operating_status"] == "ERROR"
    r = a.delete(f"{LB}/{lb['id']}")
    assert r.status_code == 409 and "cascade" in r.json()["faultstring"]
    assert a.delete(f"{LB}/{lb['id']}", params={"cascade": "true"}).status_code == 204
    assert ok(a.get(f"{LISTENERS}/{li['id']}"))["listener"]["provisioning_status"] == "PENDING_DELETE"
    # The operator finishes: it deletes the documents, and the objects are gone.
    from tests.apiserver.helpers import run
    from xdsr.model import keys
    from xdsr.store.etcd import EtcdStore

    async def remove() -> None:
        store = EtcdStore(api.endpoint)
        await store.delete(keys.lb_key(lb["id"]))
        await store.delete(keys.status_key(lb["id"]))
        await store.close()

    run(remove())
    eventually(lambda: _gone(a, f"{LB}/{lb['id']}"))
    assert a.get(f"{LISTENERS}/{li['id']}").status_code == 404


def _gone(c: httpx.Client, path: str) -> None:
    assert c.get(path).status_code == 404


def test_fully_populated_create(a: httpx.Client) -> None:
    member = {"address": "192.0.2.21", "protocol_port": 8080}
    body = {
        "vip_address": vip(),
        "listeners": [
            {
                "protocol": "TCP",
                "protocol_port": 8080,
                "default_pool": {
                    "name": "p1",
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [member],
                    "healthmonitor": {"type": "TCP", "delay": 3, "timeout": 1, "max_retries": 2},
                },
            }
        ],
        "pools": [{"name": "spare", "protocol": "UDP", "lb_algorithm": "SOURCE_IP_PORT"}],
    }
    lb = ok(a.post(LB, json={"loadbalancer": body}), s.LoadBalancerCreatedRoot, 201)["loadbalancer"]
    s.LoadBalancerFullOut.model_validate(lb)
    li, pools = lb["listeners"][0], {p["name"]: p for p in lb["pools"]}
    assert li["default_pool_id"] == pools["p1"]["id"] and pools["spare"]["listeners"] == []
    assert pools["p1"]["members"][0]["address"] == "192.0.2.21"
    assert pools["p1"]["healthmonitor"]["type"] == "TCP"
    assert ok(a.get(f"{LB}/{lb['id']}"))["loadbalancer"]["listeners"] == [{"id": li["id"]}]

    # The graph is checked as a whole, before anything is written.
    body["vip_address"] = vip()
    body["listeners"][0]["default_pool"]["members"] = [{**member, "protocol_port": 9090}]  # type: ignore[index]
    r = a.post(LB, json={"loadbalancer": body})
    assert r.status_code == 400
    assert r.json()["faultstring"].startswith("loadbalancer.listeners[0].default_pool_id:")
    assert "does not translate ports" in r.json()["faultstring"]


def test_listener_with_inline_default_pool(a: httpx.Client) -> None:
    lb = create_lb(a)
    li = create_listener(
        a, lb["id"], 25, default_pool={"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "members": [
            {"address": "192.0.2.31", "protocol_port": 25}]},
    )  # fmt: skip
    pool = ok(a.get(f"{POOLS}/{li['default_pool_id']}"))["pool"]
    assert pool["listeners"] == [{"id": li["id"]}] and len(pool["members"]) == 1


def test_batch_member_update(api: ServerThread, a: httpx.Client) -> None:
    lb = create_lb(a)
    pool = create_pool(a, loadbalancer_id=lb["id"])
    keep = create_member(a, pool["id"], "192.0.2.41", 80, weight=1)
    drop = create_member(a, pool["id"], "192.0.2.42", 80)
    r = a.put(
        f"{POOLS}/{pool['id']}/members",
        json={
            "members": [
                {"address": "192.0.2.41", "protocol_port": 80, "weight": 7},
                {"address": "192.0.2.43", "protocol_port": 80},
            ]
        },
    )
    assert r.status_code == 202, r.text
    members = {m["address"]: m for m in ok(a.get(f"{POOLS}/{pool['id']}/members"))["members"]}
    assert set(members) == {"192.0.2.41", "192.0.2.43"}
    assert members["192.0.2.41"]["id"] == keep["id"] and members["192.0.2.41"]["weight"] == 7
    assert a.get(f"{POOLS}/{pool['id']}/members/{drop['id']}").status_code == 404
    r = a.put(
        f"{POOLS}/{pool['id']}/members",
        params={"additive_only": "true"},
        json={"members": [{"address": "192.0.2.44", "protocol_port": 80}]},
    )
    assert r.status_code == 202
    assert len(ok(a.get(f"{POOLS}/{pool['id']}/members"))["members"]) == 3


def test_filters_fields_sort_and_pages(a: httpx.Client) -> None:
    tag = vip()  # a unique string
    made = [create_lb(a, name=f"f{i}", tags=[tag, f"n{i}"], admin_state_up=i != 1) for i in range(4)]
    ids = {x["id"] for x in made}

    def names(**params: Any) -> list[str]:
        body = ok(a.get(LB, params={"tags": tag, **params}))
        return [x["name"] for x in body["loadbalancers"]]

    assert sorted(names()) == ["f0", "f1", "f2", "f3"]
    assert names(name="f2") == ["f2"]
    assert names(name=["f1", "f3"], sort="name:asc") == ["f1", "f3"]
    assert names(admin_state_up="false") == ["f1"]
    assert names(vip_address=made[3]["vip_address"]) == ["f3"]
    assert names(provisioning_status="PENDING_CREATE", sort="name:desc") == ["f3", "f2", "f1", "f0"]
    assert names(project_id="someone-else") == []
    assert names(**{"tags-any": "n0,n2"}, sort="name") == ["f2", "f0"]  # default direction: desc
    assert sorted(names(**{"not-tags-any": "n0"})) == ["f1", "f2", "f3"]
    assert names(sort_key="name", sort_dir="asc") == ["f0", "f1", "f2", "f3"]

    body = ok(a.get(LB, params={"tags": tag, "fields": "id,name"}))
    assert all(set(x) == {"id", "name"} for x in body["loadbalancers"])
    body = ok(a.get(f"{LB}/{made[0]['id']}", params={"fields": ["name", "vip_address"]}))
    assert set(body["loadbalancer"]) == {"name", "vip_address"}

    # Pages: follow the next links.
    seen: list[str] = []
    url: str | None = f"{LB}?tags={tag}&sort=name:asc&limit=3"
    while url:
        page = ok(a.get(url))
        seen += [x["id"] for x in page["loadbalancers"]]
        nxt = [link["href"] for link in page["loadbalancers_links"] if link["rel"] == "next"]
        url = nxt[0] if nxt else None
    assert len(seen) == 4 and set(seen) == ids
    second = ok(a.get(LB, params={"tags": tag, "sort": "name:asc", "limit": 2, "marker": made[1]["id"]}))
    assert [x["name"] for x in second["loadbalancers"]] == ["f2", "f3"]
    assert [link["rel"] for link in second["loadbalancers_links"]] == ["previous"]
    back = ok(a.get(LB, params={"tags": tag, "sort": "name:asc", "marker": made[2]["id"], "page_reverse": "True"}))
    assert [x["name"] for x in back["loadbalancers"]] == ["f0", "f1"]

    # Children lists filter by relation too.
    li = create_listener(a, made[0]["id"], 80)
    create_listener(a, made[1]["id"], 80)
    got = ok(a.get(LISTENERS, params={"loadbalancer_id": made[0]["id"]}), s.ListenersRoot)["listeners"]
    assert [x["id"] for x in got] == [li["id"]]
    assert ok(a.get(LISTENERS, params={"protocol_port": 80, "loadbalancer_id": made[1]["id"]}))["listeners"]

    for bad, field in [
        ({"colour": "red"}, "colour"),
        ({"protocol_port": "eighty"}, "protocol_port"),
        ({"sort": "nope:asc"}, "sort"),
        ({"sort": "name:up"}, "sort_dir"),
        ({"limit": "many"}, "limit"),
        ({"marker": "not-an-id"}, "marker"),
        ({"admin_state_up": "maybe"}, "admin_state_up"),
    ]:
        r = a.get(LISTENERS, params=bad)
        assert r.status_code == 400 and r.json()["faultstring"].startswith(f"{field}:"), (bad, r.text)


def test_not_found(a: httpx.Client) -> None:
    lb = create_lb(a)
    pool = create_pool(a, loadbalancer_id=lb["id"])
    missing = "00000000-0000-4000-8000-000000000000"
    for method, path in [
        ("GET", f"{LB}/{missing}"),
        ("PUT", f"{LB}/{missing}"),
        ("DELETE", f"{LB}/{missing}"),
        ("GET", f"{LB}/{missing}/status"),
        ("GET", f"{LB}/{missing}/stats"),
        ("GET", f"{LISTENERS}/{missing}"),
        ("PUT", f"{LISTENERS}/{missing}"),
        ("DELETE", f"{LISTENERS}/{missing}"),
        ("GET", f"{LISTENERS}/{missing}/stats"),
        ("GET", f"{POOLS}/{missing}"),
        ("PUT", f"{POOLS}/{missing}"),
        ("DELETE", f"{POOLS}/{missing}"),
        ("GET", f"{POOLS}/{missing}/members"),
        ("POST", f"{POOLS}/{missing}/members"),
        ("GET", f"{POOLS}/{pool['id']}/members/{missing}"),
        ("PUT", f"{POOLS}/{pool['id']}/members/{missing}"),
        ("DELETE", f"{POOLS}/{pool['id']}/members/{missing}"),
        ("GET", f"{HMS}/{missing}"),
        ("PUT", f"{HMS}/{missing}"),
        ("DELETE", f"{HMS}/{missing}"),
        ("GET", "/v2/lbaas/no-such-resource"),
    ]:
        body = _valid_body(path, method)
        r = a.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["faultcode"] == "Client" and "not found" in r.json()["faultstring"]
    # Ids in bodies: 404 naming the field.
    r = a.post(LISTENERS, json={"listener": {"loadbalancer_id": missing, "protocol": "TCP", "protocol_port": 1}})
    assert r.status_code == 404 and r.json()["faultstring"].startswith("listener.loadbalancer_id:")


def _valid_body(path: str, method: str) -> dict[str, Any] | None:
    if method == "PUT":
        key = {
            "loadbalancers": "loadbalancer",
            "listeners": "listener",
            "pools": "pool",
            "healthmonitors": "healthmonitor",
        }
        kind = path.split("/")[3]
        return {"member" if "/members/" in path else key[kind]: {"name": "x"}}
    if method == "POST":
        return {"member": {"address": "192.0.2.1", "protocol_port": 80}}
    return None


def test_aliases(a: httpx.Client) -> None:
    lb = create_lb(a)
    for prefix in ("/v2.0/lbaas", "/v2", "/v2.0"):
        assert a.get(f"{prefix}/loadbalancers/{lb['id']}").status_code == 200, prefix
    assert a.get(f"{LB}/{lb['id']}/statuses").status_code == 200
    assert ok(a.get("/v2/lbaas/providers"))["providers"][0]["name"] == "xdsr"


def test_openapi_document(a: httpx.Client) -> None:
    doc = ok(a.get("/openapi.json"))
    paths = doc["paths"]
    for path in [
        "/v2/lbaas/loadbalancers",
        "/v2/lbaas/loadbalancers/{loadbalancer_id}/status",
        "/v2/lbaas/loadbalancers/{loadbalancer_id}/stats",
        "/v2/lbaas/listeners/{listener_id}/stats",
        "/v2/lbaas/pools/{pool_id}/members/{member_id}",
        "/v2/lbaas/healthmonitors/{healthmonitor_id}",
    ]:
        assert path in paths
    post = paths["/v2/lbaas/loadbalancers"]["post"]
    assert "422" not in post["responses"] and "400" in post["responses"]
    assert doc["components"]["schemas"]["LoadBalancerCreate"]["required"] == ["vip_address"]
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-Auth-Token"


def api_url(c: httpx.Client) -> str:
    return str(c.base_url).rstrip("/")
