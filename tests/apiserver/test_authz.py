"""Tokens and projects: no token, no answer; a project sees and changes only
its own objects, and another project's object is a plain 404; an admin sees
everything and may create for any project."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.apiserver.helpers import (
    PROJECT_A,
    PROJECT_B,
    TOKENS,
    ServerThread,
    client,
    create_lb,
    create_listener,
    create_member,
    create_pool,
    stored,
    vip,
)
from xdsr.apiserver.auth import TokenRegistry, TokensError, load_tokens

LB = "/v2/lbaas/loadbalancers"
RR = {"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}


@pytest.fixture(scope="module")
def objs(api: ServerThread) -> Iterator[dict[str, str]]:
    """Project A's load balancer with one object of every kind."""
    with client(api) as c:
        lb = create_lb(c)
        li = create_listener(c, lb["id"], 80)
        pool = create_pool(c, listener_id=li["id"])
        member = create_member(c, pool["id"], "192.0.2.61", 80)
        spare = create_pool(c, loadbalancer_id=lb["id"])
        r = c.post(
            "/v2/lbaas/healthmonitors",
            json={"healthmonitor": {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}},
        )
        assert r.status_code == 201
        yield {
            "lb": lb["id"],
            "listener": li["id"],
            "pool": pool["id"],
            "spare": spare["id"],
            "member": member["id"],
            "hm": r.json()["healthmonitor"]["id"],
        }


def requests_on(o: dict[str, str]) -> list[tuple[str, str, Any]]:
    """Every operation on project A's objects."""
    pool, member = f"/v2/lbaas/pools/{o['pool']}", f"/v2/lbaas/pools/{o['pool']}/members/{o['member']}"
    return [
        ("GET", f"{LB}/{o['lb']}", None),
        ("PUT", f"{LB}/{o['lb']}", {"loadbalancer": {"name": "mine"}}),
        ("DELETE", f"{LB}/{o['lb']}?cascade=true", None),
        ("GET", f"{LB}/{o['lb']}/status", None),
        ("GET", f"{LB}/{o['lb']}/stats", None),
        ("GET", f"/v2/lbaas/listeners/{o['listener']}", None),
        ("PUT", f"/v2/lbaas/listeners/{o['listener']}", {"listener": {"name": "mine"}}),
        ("DELETE", f"/v2/lbaas/listeners/{o['listener']}", None),
        ("GET", f"/v2/lbaas/listeners/{o['listener']}/stats", None),
        ("GET", pool, None),
        ("PUT", pool, {"pool": {"name": "mine"}}),
        ("DELETE", f"/v2/lbaas/pools/{o['spare']}", None),
        ("GET", f"{pool}/members", None),
        ("POST", f"{pool}/members", {"member": {"address": "192.0.2.62", "protocol_port": 80}}),
        ("PUT", f"{pool}/members", {"members": []}),
        ("GET", member, None),
        ("PUT", member, {"member": {"weight": 0}}),
        ("DELETE", member, None),
        ("GET", f"/v2/lbaas/healthmonitors/{o['hm']}", None),
        ("PUT", f"/v2/lbaas/healthmonitors/{o['hm']}", {"healthmonitor": {"delay": 9}}),
        ("DELETE", f"/v2/lbaas/healthmonitors/{o['hm']}", None),
        # Creating under another project's objects
        ("POST", "/v2/lbaas/listeners", {"listener": {"loadbalancer_id": o["lb"], "protocol": "TCP",
                                                      "protocol_port": 1}}),
        ("POST", "/v2/lbaas/pools", {"pool": {"loadbalancer_id": o["lb"], **RR}}),
        ("POST", "/v2/lbaas/pools", {"pool": {"listener_id": o["listener"], **RR}}),
        ("POST", "/v2/lbaas/healthmonitors", {"healthmonitor": {"pool_id": o["spare"], "type": "TCP", "delay": 5,
                                                                "timeout": 3, "max_retries": 3}}),
    ]  # fmt: skip


def test_another_project_can_neither_read_nor_change(api: ServerThread, objs: dict[str, str]) -> None:
    before = stored(api.endpoint, objs["lb"])
    with client(api, "token-of-project-b") as b:
        for method, path, body in requests_on(objs):
            r = b.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            text = r.json()["faultstring"]
            assert "not found" in text and PROJECT_A not in text, text
        # Lists show nothing of A's.
        for path, key in [
            (LB, "loadbalancers"),
            ("/v2/lbaas/listeners", "listeners"),
            ("/v2/lbaas/pools", "pools"),
            ("/v2/lbaas/healthmonitors", "healthmonitors"),
        ]:
            for params in ({}, {"project_id": PROJECT_A}):
                listed = b.get(path, params=params).json()[key]
                assert all(x["project_id"] == PROJECT_B for x in listed), path
        assert b.get(LB, params={"marker": objs["lb"]}).status_code == 400  # not even as a marker
        # B's own listener cannot take A's pool as default pool.
        mine = create_lb(b)
        li = create_listener(b, mine["id"], 80)
        r = b.put(f"/v2/lbaas/listeners/{li['id']}", json={"listener": {"default_pool_id": objs["spare"]}})
        assert r.status_code == 404
    assert stored(api.endpoint, objs["lb"]) == before


def test_no_token_no_answer(api: ServerThread, objs: dict[str, str]) -> None:
    for token in (None, "not-a-token", "token-of-project-a-"):
        with client(api, token) as c:
            for method, path, body in [*requests_on(objs), ("GET", LB, None), ("POST", LB, {"loadbalancer": {}})]:
                r = c.request(method, path, json=body)
                assert r.status_code == 401, (token, method, path, r.text)
                assert "X-Auth-Token" in r.json()["faultstring"]
            assert c.get("/").status_code == 200  # version discovery needs no token


def test_admin_sees_everything_and_may_set_project(api: ServerThread, objs: dict[str, str]) -> None:
    with client(api, "token-of-the-admin") as admin, client(api, "token-of-project-b") as b:
        other = create_lb(b)
        ids = {x["id"] for x in admin.get(LB).json()["loadbalancers"]}
        assert {objs["lb"], other["id"]} <= ids
        assert {x["id"] for x in admin.get(LB, params={"project_id": PROJECT_B}).json()["loadbalancers"]} >= {
            other["id"]
        }
        assert admin.get(f"/v2/lbaas/pools/{objs['pool']}/members/{objs['member']}").status_code == 200
        r = admin.put(f"/v2/lbaas/listeners/{objs['listener']}", json={"listener": {"description": "by admin"}})
        assert r.status_code == 200 and r.json()["listener"]["project_id"] == PROJECT_A
        made = admin.post(LB, json={"loadbalancer": {"vip_address": vip(), "project_id": PROJECT_B}})
        assert made.status_code == 201 and made.json()["loadbalancer"]["project_id"] == PROJECT_B
        assert b.get(f"{LB}/{made.json()['loadbalancer']['id']}").status_code == 200
        # Children go with their load balancer's project, also for the admin.
        r = admin.post(
            "/v2/lbaas/listeners",
            json={"listener": {"loadbalancer_id": other["id"], "protocol": "UDP", "protocol_port": 53}},
        )
        assert r.status_code == 201 and r.json()["listener"]["project_id"] == PROJECT_B


def test_token_registry_and_file(tmp_path: Any) -> None:
    registry = TokenRegistry(TOKENS)
    assert registry.authenticate("token-of-project-a").project_id == PROJECT_A  # type: ignore[union-attr]
    assert registry.authenticate("token-of-the-admin").admin  # type: ignore[union-attr]
    for wrong in (None, "", "token-of-project-", "token-of-project-a\n"):
        assert registry.authenticate(wrong) is None
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n  - {token: abcdefgh1, project_id: p1}\n  - {token: abcdefgh2, project_id: p2, admin: true}\n"
    )
    assert [t.admin for t in load_tokens(path)] == [False, True]
    for text, words in [
        ("tokens:\n  - {token: abcdefgh1}\n", "tokens[0].project_id"),
        ("tokens:\n  - {token: short, project_id: p}\n", "tokens[0].token"),
        ("tokens:\n  - {token: abcdefgh1, project_id: p}\n  - {token: abcdefgh1, project_id: q}\n", "duplicate"),
        ("nope: []\n", "tokens"),
    ]:
        path.write_text(text)
        with pytest.raises(TokensError, match=words.replace("[", r"\[").replace("]", r"\]")):
            load_tokens(path)
