"""What every Store must do, run over each implementation: etcd (the real
store, needs the etcd binary), the Kubernetes API (over a fake API server that
keeps the API's conventions, tests/kube/fakeapi.py) and the in-memory one that
unit tests use. What only etcd does (going away, coming back) is in
test_etcd.py; what only the Kubernetes store does is in tests/kube."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from xdsr.store import Compacted, Conflict, Event, Put, Store
from xdsr.store.docs import get_doc, update_doc
from xdsr.store.etcd import EtcdStore
from xdsr.store.kubernetes import KubernetesStore
from xdsr.store.memory import MemoryStore


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def prefix() -> str:
    return f"/t/{uuid.uuid4().hex[:8]}/"


@dataclass
class Backend:
    """How to get stores that share one data set, and how to compact it."""

    new: Callable[[], Store]
    compact: Callable[[Store, int], Coroutine[Any, Any, None]]


async def _etcd_compact(store: Store, revision: int) -> None:
    assert isinstance(store, EtcdStore)
    await store._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


async def _memory_compact(store: Store, revision: int) -> None:
    assert isinstance(store, MemoryStore)
    store.compact(revision)


@pytest.fixture(params=["etcd", "kubernetes", "memory"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "etcd":
        server = request.getfixturevalue("etcd")
        return Backend(lambda: EtcdStore(server.endpoint), _etcd_compact)
    if request.param == "kubernetes":
        api = request.getfixturevalue("kube_api")

        async def compact(store: Store, revision: int) -> None:
            api.compact(revision)

        return Backend(lambda: KubernetesStore(api.config(), namespace="contract"), compact)
    shared = MemoryStore()  # one data set, handed to every "client"
    return Backend(lambda: shared, _memory_compact)


def test_get_put_list_delete(backend: Backend) -> None:
    async def body() -> None:
        s, p = backend.new(), prefix()
        assert await s.get(p + "a") is None
        r1 = await s.put(p + "a", b"1")
        r2 = await s.put(p + "b", b"2")
        await s.put(p + "c/d", b"3")
        await s.put(p[:-1] + "x", b"outside")  # shares the prefix string minus the slash
        items, rev = await s.list(p)
        assert [i.key for i in items] == [p + "a", p + "b", p + "c/d"]
        assert rev >= r2 > r1
        got = await s.get(p + "a")
        assert got is not None and got.value == b"1" and got.mod_revision == r1 and got.create_revision == r1
        r3 = await s.put(p + "a", b"1b")
        got = await s.get(p + "a")
        assert got is not None and got.mod_revision == r3 and got.create_revision == r1
        assert await s.delete(p + "a") > r3
        assert await s.delete(p + "a") == 0
        await s.close()

    run(body())


def test_conditional_writes(backend: Backend) -> None:
    async def body() -> None:
        s, k = backend.new(), prefix() + "k"
        r1 = await s.put(k, b"v1", expect=0)
        with pytest.raises(Conflict) as exc:
            await s.put(k, b"again", expect=0)
        assert exc.value.actual == r1
        r2 = await s.put(k, b"v2", expect=r1)
        with pytest.raises(Conflict):
            await s.put(k, b"stale", expect=r1)
        with pytest.raises(Conflict):
            await s.delete(k, expect=r1)
        assert (await s.get(k)).value == b"v2"  # type: ignore[union-attr]
        assert await s.delete(k, expect=r2) > r2
        with pytest.raises(Conflict) as exc:
            await s.put(k, b"gone", expect=r2)
        assert exc.value.actual == 0
        await s.close()

    run(body())


class Counter(BaseModel):
    n: int = 0
    writers: list[int] = []


def test_concurrent_updates_lose_nothing(backend: Backend) -> None:
    async def body() -> None:
        stores = [backend.new() for _ in range(8)]
        key = prefix() + "counter"

        async def writer(i: int, s: Store) -> None:
            for _ in range(10):
                await update_doc(
                    s, key, Counter, lambda c: Counter(n=(c.n if c else 0) + 1, writers=[*(c.writers if c else []), i])
                )

        await asyncio.gather(*(writer(i, s) for i, s in enumerate(stores)))
        doc, _ = await get_doc(stores[0], key, Counter)  # type: ignore[misc]
        assert doc.n == 80 and len(doc.writers) == 80
        for s in stores:
            await s.close()

    run(body())


def test_put_many_writes_each_and_refuses_only_what_conflicts(backend: Backend) -> None:
    async def body() -> None:
        s, p = backend.new(), prefix()
        r1 = await s.put(p + "a", b"1")
        got = await s.put_many([Put(p + "a", b"1b", expect=r1), Put(p + "b", b"2", expect=0), Put(p + "c", b"3")])
        assert all(isinstance(r, int) and r > r1 for r in got)
        for key, value, rev in zip("abc", (b"1b", b"2", b"3"), got, strict=True):
            item = await s.get(p + key)
            assert item is not None and (item.value, item.mod_revision) == (value, rev)
        # One stale expect: that put is refused, the others still go.
        got = await s.put_many([Put(p + "a", b"1c", expect=r1), Put(p + "d", b"4"), Put(p + "b", b"2b", expect=0)])
        assert isinstance(got[0], Conflict) and got[0].key == p + "a"
        assert isinstance(got[1], int)
        assert isinstance(got[2], Conflict)
        assert [(i.key[len(p) :], i.value) for i in (await s.list(p))[0]] == [
            ("a", b"1b"), ("b", b"2"), ("c", b"3"), ("d", b"4"),
        ]  # fmt: skip
        assert await s.put_many([]) == []
        await s.close()

    run(body())


def test_a_watch_sees_every_put_of_a_large_put_many(backend: Backend) -> None:
    """Many puts written together may come as one watch message far larger
    than a stream reader's line buffer (etcd: one transaction)."""

    async def body() -> None:
        s, p = backend.new(), prefix()
        start = await s.put(p + "start", b"")
        puts = [Put(f"{p}k{i:03d}", bytes([65 + i % 26]) * 8000) for i in range(40)]
        await s.put_many(puts)
        seen: list[Event] = []

        async def consume() -> None:
            async for ev in s.watch(p, start + 1):
                seen.append(ev)
                if len(seen) == len(puts):
                    return

        await asyncio.wait_for(consume(), 20)
        assert sorted((e.key, e.value) for e in seen) == [(x.key, x.value) for x in puts]  # in no promised order
        await s.close()

    run(body())


def test_watch_from_a_revision_sees_every_change_in_order(backend: Backend) -> None:
    async def body() -> None:
        s, p = backend.new(), prefix()
        start = await s.put(p + "a", b"1")
        await s.put(p + "b", b"2")
        await s.delete(p + "a")
        await s.put(p[:-1] + "x", b"outside")  # not under the prefix: not seen
        seen: list[Event] = []

        async def consume() -> None:
            async for ev in s.watch(p, start):
                seen.append(ev)
                if len(seen) == 4:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await s.put(p + "c", b"3")  # after the watch started
        await asyncio.wait_for(task, 10)
        assert [(e.type, e.key[len(p):], e.value) for e in seen] == [
            ("put", "a", b"1"), ("put", "b", b"2"), ("delete", "a", b""), ("put", "c", b"3"),
        ]  # fmt: skip
        assert [e.mod_revision for e in seen] == sorted(e.mod_revision for e in seen)
        await s.close()

    run(body())


def test_a_watch_from_a_list_misses_nothing(backend: Backend) -> None:
    """The informer's pattern: list, then watch from the list's revision + 1."""

    async def body() -> None:
        s, p = backend.new(), prefix()
        await s.put(p + "a", b"1")
        items, rev = await s.list(p)
        assert [i.key for i in items] == [p + "a"]
        written = await s.put(p + "b", b"2")
        got: list[Event] = []
        async for ev in s.watch(p, rev + 1):
            got.append(ev)
            break
        assert [(e.key, e.mod_revision) for e in got] == [(p + "b", written)]
        await s.close()

    run(body())


def test_leases_expire(backend: Backend) -> None:
    async def body() -> None:
        s, k = backend.new(), prefix() + "leased"
        lease = await s.grant_lease(1)
        await s.put(k, b"x", lease=lease)
        assert await s.keep_alive(lease)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await s.get(k) is not None:
            assert loop.time() < deadline, "the leased key outlived its lease"
            await asyncio.sleep(0.1)
        assert not await s.keep_alive(lease)
        await s.close()

    run(body())


def test_a_revoked_lease_takes_its_keys_and_a_watch_sees_them_go(backend: Backend) -> None:
    async def body() -> None:
        s, p = backend.new(), prefix()
        lease = await s.grant_lease(60)
        start = await s.put(p + "a", b"1", lease=lease)
        await s.put(p + "b", b"2", lease=lease)
        await s.put(p + "c", b"3")  # no lease: stays
        await s.revoke_lease(lease)
        items, _ = await s.list(p)
        assert [i.key for i in items] == [p + "c"]
        deletes: list[Event] = []
        async for ev in s.watch(p, start):
            if ev.type == "delete":
                deletes.append(ev)
                if len(deletes) == 2:
                    break
        assert sorted(e.key for e in deletes) == [p + "a", p + "b"]
        assert not await s.keep_alive(lease)
        await s.close()

    run(body())


def test_a_watch_from_compacted_history_raises(backend: Backend) -> None:
    async def body() -> None:
        s, p = backend.new(), prefix()
        first = last = await s.put(p + "a", b"0")
        for i in range(1, 5):
            last = await s.put(p + "a", str(i).encode())
        await backend.compact(s, last)
        with pytest.raises(Compacted):
            async for _ in s.watch(p, first):
                pass
        got = []
        async for ev in s.watch(p, last):
            got.append(ev)
            break
        assert [e.value for e in got] == [b"4"]  # the compaction's own revision is kept
        await s.close()

    run(body())
