"""The etcd store against a real etcd."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from pydantic import BaseModel

from xdsr.local.etcd import EtcdServer
from xdsr.store import Compacted, Conflict, Event, StoreUnavailable
from xdsr.store.docs import get_doc, update_doc
from xdsr.store.etcd import EtcdStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def prefix() -> str:
    return f"/t/{uuid.uuid4().hex[:8]}/"


def test_get_put_list_delete(etcd: EtcdServer) -> None:
    async def body() -> None:
        s, p = EtcdStore(etcd.endpoint), prefix()
        assert await s.get(p + "a") is None
        r1 = await s.put(p + "a", b"1")
        r2 = await s.put(p + "b", b"2")
        await s.put(p + "c/d", b"3")
        await s.put(p[:-1] + "x", b"outside")  # shares the prefix string minus the slash
        items, rev = await s.list(p)
        assert [i.key for i in items] == [p + "a", p + "b", p + "c/d"]
        assert rev >= r2 > r1
        got = await s.get(p + "a")
        assert got is not None and got.value == b"1" and got.mod_revision == r1
        assert await s.delete(p + "a") > r2
        assert await s.delete(p + "a") == 0
        await s.close()

    run(body())


def test_conditional_writes(etcd: EtcdServer) -> None:
    async def body() -> None:
        s, k = EtcdStore(etcd.endpoint), prefix() + "k"
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
        await s.close()

    run(body())


class Counter(BaseModel):
    n: int = 0
    writers: list[int] = []


def test_concurrent_updates_lose_nothing(etcd: EtcdServer) -> None:
    async def body() -> None:
        stores = [EtcdStore(etcd.endpoint) for _ in range(8)]
        key = prefix() + "counter"

        async def writer(i: int, s: EtcdStore) -> None:
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


def test_watch_from_a_revision_sees_every_change_in_order(etcd: EtcdServer) -> None:
    async def body() -> None:
        s, p = EtcdStore(etcd.endpoint), prefix()
        start = await s.put(p + "a", b"1")
        await s.put(p + "b", b"2")
        await s.delete(p + "a")
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


def test_leases_expire(etcd: EtcdServer) -> None:
    async def body() -> None:
        s, k = EtcdStore(etcd.endpoint), prefix() + "leased"
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


def test_unavailable_and_compacted() -> None:
    async def body() -> None:
        with EtcdServer() as server:
            s, p = EtcdStore(server.endpoint, timeout=1.0), prefix()
            first = await s.put(p + "a", b"1")
            last = first
            for i in range(5):
                last = await s.put(p + "a", str(i).encode())
            await s._call("/v3/kv/compaction", {"revision": str(last), "physical": True})
            with pytest.raises(Compacted):
                async for _ in s.watch(p, first):
                    pass
            server.stop()
            with pytest.raises(StoreUnavailable):
                await s.get(p + "a")
            with pytest.raises(StoreUnavailable):
                async for _ in s.watch(p, last):
                    pass
            server.start()
            assert (await s.get(p + "a")).value == b"4"  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                await s.close()

    run(body())
