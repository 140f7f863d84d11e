"""The provider agent against a real xdsr API server (on a real etcd), with
a stand-in for Octavia's DriverLibrary and for the operator: it makes xdsr
hold what Octavia's committed tree holds, whatever the change, in one
request and at most one write of xdsr's document (none when nothing
changed), waits for commits, and reports statuses. The driver refuses with
the API server's words. No root, no Octavia."""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.apiserver.helpers import TOKEN_ADMIN, FakeOperator, ServerThread, eventually, observe, stored
from xdsr.local.etcd import EtcdServer
from xdsr.octavia import mapping, validate
from xdsr.octavia.agent import Agent
from xdsr.octavia.xdsr_api import XdsrClient, tree_path


def uid() -> str:
    return str(uuid.uuid4())


class FakeLibrary:
    """Octavia's committed state, as DriverLibrary would show it."""

    def __init__(self) -> None:
        self.trees: dict[str, dict[str, Any]] = {}
        self.reports: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []

    def get_loadbalancer(self, lb_id: str) -> dict[str, Any] | None:
        t = self.trees.get(lb_id)
        return copy.deepcopy(t) if t else None

    def get_pool(self, pool_id: str) -> Any:
        for lb_id, t in self.trees.items():
            if any(p["pool_id"] == pool_id for p in t["pools"]):
                return SimpleNamespace(loadbalancer_id=lb_id)
        return None

    def update_loadbalancer_status(self, status: dict[str, Any]) -> None:
        self.reports.append(copy.deepcopy(status))

    def update_listener_statistics(self, stats: dict[str, Any]) -> None:
        self.stats.append(stats)


@pytest.fixture(scope="module")
def api() -> Iterator[ServerThread]:
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    with EtcdServer() as etcd:
        server = ServerThread(etcd.endpoint).start()
        try:
            yield server
        finally:
            server.close()


@pytest.fixture
def agent(api: ServerThread, tmp_path: Path) -> Iterator[Agent]:
    lib = FakeLibrary()
    a = Agent(
        lib,
        XdsrClient(api.url, lambda: TOKEN_ADMIN),
        tmp_path / "spool",
        apply_timeout=1.0,
        commit_timeout=0.5,
        observe_timeout=10.0,
    )
    yield a
    a.xdsr.close()


def member(pool_id: str, last: int, **kw: Any) -> dict[str, Any]:
    return {"member_id": uid(), "pool_id": pool_id, "address": f"10.9.0.{last}", "protocol_port": 80, "weight": 1, **kw}


def octavia_tree(vip_last: int) -> dict[str, Any]:
    lb, li, pool, hm = uid(), uid(), uid(), uid()
    return {
        "loadbalancer_id": lb,
        "project_id": "project-a",
        "name": "web",
        "vip_address": f"198.51.100.{vip_last}",
        "admin_state_up": True,
        "listeners": [
            {
                "listener_id": li,
                "loadbalancer_id": lb,
                "name": "l80",
                "protocol": "TCP",
                "protocol_port": 80,
                "default_pool_id": pool,
                "timeout_client_data": 50000,
            }
        ],
        "pools": [
            {
                "pool_id": pool,
                "loadbalancer_id": lb,
                "listener_id": li,
                "name": "p",
                "protocol": "TCP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [member(pool, 1), member(pool, 2)],
                "healthmonitor": {
                    "healthmonitor_id": hm,
                    "pool_id": pool,
                    "type": "TCP",
                    "delay": 5,
                    "timeout": 3,
                    "max_retries": 3,
                },
            }
        ],
    }


def xdsr_view(agent: Agent, lb_id: str) -> dict[str, Any]:
    t = agent.xdsr.tree(lb_id)
    assert t is not None
    return {
        "listeners": {li["id"]: li["default_pool_id"] for li in t["listeners"]},
        "pools": {p["id"] for p in t["pools"]},
        "members": {m["id"]: (p["id"], m["weight"]) for p in t["pools"] for m in p["members"]},
        "healthmonitors": {
            p["healthmonitor"]["id"]: p["healthmonitor"]["delay"] for p in t["pools"] if p["healthmonitor"]
        },
    }


def generation(api: ServerThread, lb_id: str) -> int:
    """The generation of xdsr's document: every write of it adds one."""
    doc = stored(api.endpoint, lb_id)
    assert doc is not None
    return doc.generation


class Calls:
    """The requests the agent sends to xdsr."""

    def __init__(self, agent: Agent) -> None:
        self.seen: list[tuple[str, str]] = []
        real = agent.xdsr.request

        def spy(method: str, path: str, **kw: Any) -> Any:
            self.seen.append((method, path))
            return real(method, path, **kw)

        agent.xdsr.request = spy  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str]]:
        out, self.seen = self.seen, []
        return out


def test_sync_converges_on_octavias_tree(api: ServerThread, agent: Agent) -> None:
    lb = octavia_tree(1)
    lb_id = lb["loadbalancer_id"]
    pool = lb["pools"][0]
    calls = Calls(agent)
    agent.sync(lb)
    assert calls.take() == [("PUT", tree_path(lb_id))]  # the whole tree in one request
    assert generation(api, lb_id) == 1
    v = xdsr_view(agent, lb_id)
    assert v["pools"] == {pool["pool_id"]}
    assert set(v["members"]) == {m["member_id"] for m in pool["members"]}
    assert v["listeners"] == {lb["listeners"][0]["listener_id"]: pool["pool_id"]}

    # Nothing changed in Octavia: nothing is written to xdsr.
    calls.take()
    agent.sync(lb)
    assert calls.take() == [("PUT", tree_path(lb_id))]
    assert generation(api, lb_id) == 1

    # Many changes at once: a member's weight, a new member, the monitor's
    # delay, a second pool that becomes the listener's default, the first
    # pool deleted (skip), a second listener.
    pool["members"][0]["weight"] = 0
    pool["members"].append(member(pool["pool_id"], 3))
    pool["healthmonitor"]["delay"] = 9
    new_pool = {
        "pool_id": uid(),
        "loadbalancer_id": lb_id,
        "protocol": "TCP",
        "lb_algorithm": "SOURCE_IP_PORT",
        "members": [],
    }
    new_pool["members"] = [member(new_pool["pool_id"], 7)]
    lb["pools"].append(new_pool)
    agent.sync(lb)
    assert len(calls.take()) == 1 and generation(api, lb_id) == 2  # five changes, one request, one write
    v = xdsr_view(agent, lb_id)
    assert v["members"][pool["members"][0]["member_id"]][1] == 0
    assert pool["members"][2]["member_id"] in v["members"]
    assert v["healthmonitors"] == {pool["healthmonitor"]["healthmonitor_id"]: 9}

    lb["listeners"][0]["default_pool_id"] = new_pool["pool_id"]
    udp_li = {"listener_id": uid(), "loadbalancer_id": lb_id, "protocol": "UDP", "protocol_port": 53}
    lb["listeners"].append(udp_li)
    agent.sync(lb, skip=frozenset({pool["pool_id"]}))  # the old pool is being deleted
    v = xdsr_view(agent, lb_id)
    assert v["pools"] == {new_pool["pool_id"]}
    assert v["listeners"] == {lb["listeners"][0]["listener_id"]: new_pool["pool_id"], udp_li["listener_id"]: None}
    assert set(v["members"]) == {new_pool["members"][0]["member_id"]}

    # A listener deleted, the monitor gone with its pool.
    agent.sync(lb, skip=frozenset({pool["pool_id"], udp_li["listener_id"]}))
    v = xdsr_view(agent, lb_id)
    assert set(v["listeners"]) == {lb["listeners"][0]["listener_id"]}
    assert v["healthmonitors"] == {}

    # The default pool of a listener deleted (Octavia's tree still names it
    # until the delete is reported): detached first, then deleted.
    agent.sync(lb, skip=frozenset({pool["pool_id"], udp_li["listener_id"], new_pool["pool_id"]}))
    v = xdsr_view(agent, lb_id)
    assert v["pools"] == set() and v["listeners"] == {lb["listeners"][0]["listener_id"]: None}


def test_process_waits_for_the_commit_and_reports(api: ServerThread, agent: Agent) -> None:
    lib: FakeLibrary = agent.lib
    lb = octavia_tree(2)
    lb_id = lb["loadbalancer_id"]
    lib.trees[lb_id] = lb
    with FakeOperator(api.endpoint):
        agent.process({"op": "loadbalancer_create", "lb_id": lb_id, "object": lb})
        (report,) = lib.reports
        assert report["loadbalancers"] == [{"id": lb_id, "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}]
        assert {e["id"] for e in report["members"]} == {m["member_id"] for m in lb["pools"][0]["members"]}

        # A member create Octavia never committed (rolled back): dropped, nothing reported.
        ghost = member(lb["pools"][0]["pool_id"], 9)
        agent.process({"op": "member_create", "object": ghost})
        assert len(lib.reports) == 1
        assert ghost["member_id"] not in xdsr_view(agent, lb_id)["members"]

        # A member delete: DELETED, and its pool, listener and load balancer
        # reported back. One Octavia change, one write of xdsr's document.
        gone = lb["pools"][0]["members"][1]
        before = generation(api, lb_id)
        agent.process({"op": "member_delete", "object": gone})
        assert generation(api, lb_id) == before + 1
        report = lib.reports[-1]
        assert {"id": gone["member_id"], "provisioning_status": "DELETED"} in report["members"]
        assert report["pools"][0]["provisioning_status"] == "ACTIVE"
        assert report["listeners"][0]["provisioning_status"] == "ACTIVE"

        # The load balancer deleted in cascade: DELETED for everything, gone from xdsr.
        agent.process({"op": "loadbalancer_delete", "lb_id": lb_id, "object": lb, "cascade": True})
        report = lib.reports[-1]
        assert report["loadbalancers"] == [{"id": lb_id, "provisioning_status": "DELETED"}]
        assert agent.xdsr.tree(lb_id) is None


def test_follow_reports_status_changes_and_resends_counters(api: ServerThread, agent: Agent) -> None:
    lib: FakeLibrary = agent.lib
    lb = octavia_tree(3)
    lb_id = lb["loadbalancer_id"]
    lib.trees[lb_id] = lb
    agent.sync(lb)
    li = lb["listeners"][0]["listener_id"]
    observe(api.endpoint, lb_id, operating="DEGRADED", stats={li: (10, 1500)})

    def followed() -> None:
        agent.follow(stats=True)
        assert lib.stats  # the API server's cache follows etcd by a watch: not at once

    eventually(followed)
    assert lib.reports[-1]["loadbalancers"] == [{"id": lb_id, "operating_status": "DEGRADED"}]
    assert lib.stats[-1]["listeners"][0]["bytes_in"] == 1500
    n_reports, n_stats = len(lib.reports), len(lib.stats)
    agent.follow(stats=True)
    assert (len(lib.reports), len(lib.stats)) == (n_reports, n_stats)  # nothing changed: nothing sent
    # Once resend_seconds have passed, the absolute counters again, unchanged:
    # Octavia may have lost the last write.
    agent.follower.resend_seconds = 0.0
    agent.follow(stats=True)
    assert len(lib.reports) == n_reports  # no status changed: none sent
    assert len(lib.stats) == n_stats + 1
    assert lib.stats[-1]["listeners"] == lib.stats[-2]["listeners"]
    agent.follow(stats=False)
    assert len(lib.stats) == n_stats + 1  # counters only at a stats tick

    # A load balancer Octavia does not have is none of Octavia's business.
    other = octavia_tree(4)
    agent.sync(other)
    observe(api.endpoint, other["loadbalancer_id"])
    agent.follow(stats=True)
    assert all(r["loadbalancers"][0]["id"] != other["loadbalancer_id"] for r in lib.reports if "loadbalancers" in r)


def test_a_lost_statistics_write_is_repaired_without_new_traffic(api: ServerThread, agent: Agent) -> None:
    """Octavia's stats listener swallows database errors: the write seems to
    succeed and is lost. The next stats tick sends the same counters again."""
    lib: FakeLibrary = agent.lib
    lb = octavia_tree(5)
    lb_id = lb["loadbalancer_id"]
    lib.trees[lb_id] = lb
    agent.sync(lb)
    li = lb["listeners"][0]["listener_id"]
    observe(api.endpoint, lb_id, stats={li: (22, 33180)})

    def served() -> None:
        assert agent.xdsr.statuses()[lb_id]["listeners"][0]["bytes_in"] == 33180

    eventually(served)
    octavias: dict[str, int] = {}
    lost = [True]

    def update(stats: dict[str, Any]) -> None:
        if lost.pop() if lost else False:
            return  # "database is locked", logged and swallowed by Octavia
        for c in stats["listeners"]:
            octavias[c["id"]] = c["bytes_in"]

    lib.update_listener_statistics = update  # type: ignore[method-assign]
    agent.follower.resend_seconds = 0.0  # the next tick is past the resend interval

    def followed() -> None:
        agent.follow(stats=True)
        assert octavias.get(li) == 33180

    eventually(followed)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("listeners", {"protocol": "HTTP"}),
        ("listeners", {"connection_limit": 10}),
        ("listeners", {"default_tls_container_ref": "https://barbican/secrets/1"}),
        ("pools", {"lb_algorithm": "LEAST_CONNECTIONS"}),
        ("pools", {"session_persistence": {"type": "SOURCE_IP"}}),
        ("pools", {"tls_enabled": True}),
        ("members", {"backup": True}),
        ("members", {"weight": 1000}),
        ("healthmonitor", {"http_version": 1.1}),
        ("loadbalancer", {"additional_vips": [{"ip_address": "198.51.100.200"}]}),
        ("loadbalancer", {"vip_address": "127.0.0.1"}),
    ],
)
def test_the_driver_refuses_in_the_api_servers_words(agent: Agent, where: str, change: dict[str, Any]) -> None:
    """The same Octavia tree, judged by the driver (validate) and sent to the
    xdsr API server (as the agent would): the same refusal, word for word."""
    lb = octavia_tree(200)
    pool = lb["pools"][0]
    target = {
        "loadbalancer": lb,
        "listeners": lb["listeners"][0],
        "pools": pool,
        "members": pool["members"][0],
        "healthmonitor": pool["healthmonitor"],
    }[where]
    target.update(change)
    with pytest.raises(validate.Refused) as refused:
        validate.loadbalancer(lb)
    r = agent.xdsr.http.put(
        tree_path(lb["loadbalancer_id"]),
        json={"loadbalancer": mapping.loadbalancer(lb)},
        headers={"X-Auth-Token": TOKEN_ADMIN},
    )
    assert r.status_code == 400, r.text
    assert r.json()["faultstring"] == str(refused.value)
