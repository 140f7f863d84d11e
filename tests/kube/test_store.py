"""What only the Kubernetes store does, against the fake API server
(tests/kube/fakeapi.py: why a fake and not kmock is said there). The Store
contract itself runs in tests/store/test_contract.py over this store too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from tests.kube.fakeapi import FakeKubeApi, fake_kube_api
from xdsr.model import keys
from xdsr.store import Event
from xdsr.store.kubernetes import KubernetesStore, object_name
from xdsr.store.kubernetes_leader import LeaderElection

LB = "3f1c2a4e-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeKubeApi]:
    with fake_kube_api(bookmark_interval=0.2) as server:
        yield server


def test_status_lives_in_the_load_balancers_status_subresource(api: FakeKubeApi) -> None:
    async def body() -> None:
        s = KubernetesStore(api.config("status"), field_manager="xdsr-test")
        r1 = await s.put(keys.lb_key(LB), json.dumps({"id": LB, "generation": 1}).encode(), expect=0)
        seen_lb: list[Event] = []
        seen_status: list[Event] = []

        async def follow(prefix: str, into: list[Event], n: int) -> None:
            async for ev in s.watch(prefix, r1):
                into.append(ev)
                if len(into) == n:
                    return

        lbs = asyncio.create_task(follow(keys.LB_PREFIX, seen_lb, 2))
        statuses = asyncio.create_task(follow(keys.STATUS_PREFIX, seen_status, 2))
        r2 = await s.put(keys.status_key(LB), b'{"observed_generation":1}')
        lb = await s.get(keys.lb_key(LB))
        st = await s.get(keys.status_key(LB))
        assert lb is not None and json.loads(lb.value) == {"id": LB, "generation": 1}
        assert st is not None and json.loads(st.value) == {"observed_generation": 1} and st.mod_revision == r2
        obj = api.state.objects[("xdsr.io/loadbalancers", "status", object_name(keys.lb_key(LB)))]
        assert obj["status"] == {"observed_generation": 1} and obj["spec"]["id"] == LB
        assert {f["manager"] for f in obj["metadata"]["managedFields"]} == {"xdsr-test"}
        await s.delete(keys.lb_key(LB))  # the status goes with its object
        await asyncio.wait_for(asyncio.gather(lbs, statuses), 10)
        # the status write is no change of the intent, and the intent's is none of the status
        assert [(e.type, e.key) for e in seen_lb] == [("put", keys.lb_key(LB)), ("delete", keys.lb_key(LB))]
        assert [(e.type, e.key) for e in seen_status] == [
            ("put", keys.status_key(LB)), ("delete", keys.status_key(LB)),
        ]  # fmt: skip
        assert await s.get(keys.status_key(LB)) is None
        await s.close()

    asyncio.run(body())


def test_rules_are_named_and_labelled_by_group(api: FakeKubeApi) -> None:
    async def body() -> None:
        s = KubernetesStore(api.config("rules"))
        await s.put(keys.rules_key("g1", LB), b'{"services":[]}')
        obj = api.state.objects[("xdsr.io/lbngrouprules", "rules", f"g1.{LB}")]
        assert obj["metadata"]["labels"]["xdsr.io/group"] == "g1"
        assert obj["metadata"]["annotations"]["xdsr.io/key"] == keys.rules_key("g1", LB)
        items, _ = await s.list(keys.RULES_PREFIX + "g1/")
        assert [i.key for i in items] == [keys.rules_key("g1", LB)]
        await s.close()

    asyncio.run(body())


def test_a_watch_the_server_ends_resumes_from_its_last_bookmark(api: FakeKubeApi) -> None:
    async def body() -> None:
        s = KubernetesStore(api.config("resume"))
        s.watch_timeout = 1
        start = await s.put("/r/a", b"1")
        got: list[Event] = []

        async def follow() -> None:
            async for ev in s.watch("/r/", start):
                got.append(ev)
                if len(got) == 2:
                    return

        task = asyncio.create_task(follow())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        watches = lambda: [q for m, p, q in api.requests if q.get("watch") == "true" and "/namespaces/resume/" in p]  # noqa: E731
        while len(watches()) < 2:  # the server ended the first stream; the store asked again
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        later = await s.put("/r/b", b"2")
        await asyncio.wait_for(task, 10)
        assert [(e.key, e.mod_revision) for e in got] == [("/r/a", start), ("/r/b", later)]
        first, second = watches()[:2]
        assert first["allowWatchBookmarks"] == "true" and first["resourceVersion"] == str(start - 1)
        assert int(second["resourceVersion"]) >= start  # from the stream's last event or bookmark, not the start
        await s.close()

    asyncio.run(body())


def test_of_two_operator_replicas_one_leads_and_the_other_takes_over(api: FakeKubeApi) -> None:
    async def body() -> None:
        a_store, b_store = KubernetesStore(api.config("leader")), KubernetesStore(api.config("leader"))
        a = LeaderElection(a_store, "xdsr-operator", "a", duration=1, renew_deadline=0.7, retry=0.1)
        b = LeaderElection(b_store, "xdsr-operator", "b", duration=1, renew_deadline=0.7, retry=0.1)
        acting: list[str] = []
        a_done = asyncio.Event()

        async def work(name: str, until: asyncio.Event | None) -> None:
            acting.append(name)
            assert len(acting) == 1, f"two leaders: {acting}"
            if until is not None:
                await until.wait()
            else:
                await asyncio.Event().wait()
            acting.remove(name)

        ta = asyncio.create_task(a.lead(work("a", a_done)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while acting != ["a"]:
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        tb = asyncio.create_task(b.lead(work("b", None)))
        await asyncio.sleep(0.5)  # b keeps trying meanwhile; the work asserts one leader at a time
        assert acting == ["a"]
        a_done.set()  # a finishes and releases the Lease
        assert await asyncio.wait_for(ta, 10) is True
        while acting != ["b"]:
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        tb.cancel()
        for st in (a_store, b_store):
            await st.close()

    asyncio.run(body())


def test_lbngroup_status_conditions_and_events(api: FakeKubeApi) -> None:
    from xdsr.model.group import Group, LbnRecord
    from xdsr.store.docs import dump
    from xdsr.store.kubernetes_status import GroupStatusWriter

    async def body() -> None:
        s = KubernetesStore(api.config("groups"))
        await s.put(keys.group_key("g1"), dump(Group(name="g1", lbns=["a", "b", "c"])))
        for n in ("a", "b"):  # c is not live
            await s.put(keys.lbn_key(n), dump(LbnRecord(name=n, endpoint=f"http://{n}:9101", started_at=1.0)))
        lb = {"id": LB, "project_id": "p", "created_at": "2026-01-01T00:00:00Z", "vip_address": "203.0.113.10",
              "generation": 2}  # fmt: skip
        await s.put(keys.lb_key(LB), json.dumps(lb).encode())
        await s.put(keys.rules_key("g1", LB), json.dumps({"generation": 2, "project_id": "p"}).encode())
        await s.put(keys.status_key(LB), json.dumps({"id": LB, "observed_generation": 1}).encode())
        writer = GroupStatusWriter(s)

        def status() -> dict:  # type: ignore[type-arg]
            return api.state.objects[("xdsr.io/lbngroups", "groups", "g1")]["status"]  # type: ignore[no-any-return]

        await writer.pass_once()
        st = status()
        assert (st["nodes"], st["loadBalancers"], st["ready"]) == (2, 1, "2/3")
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds == {"Ready": ("False", "RulesPending"), "Progressing": ("True", "RulesPending"),
                         "Degraded": ("True", "NodeMissing")}  # fmt: skip
        await s.put(keys.status_key(LB), json.dumps({"id": LB, "observed_generation": 2}).encode())
        await s.put(keys.lbn_key("c"), dump(LbnRecord(name="c", endpoint="http://c:9101", started_at=1.0)))
        await writer.pass_once()
        conds = {c["type"]: (c["status"], c["reason"]) for c in status()["conditions"]}
        assert conds == {"Ready": ("True", "AllObserved"), "Progressing": ("False", "UpToDate"),
                         "Degraded": ("False", "AsExpected")}  # fmt: skip
        events = [o for (r, ns, _), o in api.state.objects.items() if r == "core/events" and ns == "groups"]
        assert sorted((e["reason"], e["type"]) for e in events) == [
            ("AllObserved", "Normal"), ("AsExpected", "Normal"), ("UpToDate", "Normal"),
        ]  # fmt: skip
        assert all(e["involvedObject"]["kind"] == "LBNGroup" for e in events)
        await s.close()

    asyncio.run(body())
