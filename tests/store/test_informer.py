"""The informer's bookkeeping, against a store whose list and watch the test
drives by hand: events in order, local writes never undone by an older event,
re-list after a lost store or a compacted revision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic import BaseModel

from xdsr.store.base import Compacted, Event, Item, StoreUnavailable
from xdsr.store.informer import Informer


class Doc(BaseModel):
    v: int


class FakeStore:
    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, int]] = {}
        self.rev = 0
        self.events: asyncio.Queue[Event | Exception] = asyncio.Queue()
        self.compacted = False

    def put(self, key: str, v: int) -> Event:
        self.rev += 1
        self.items[key] = (Doc(v=v).model_dump_json().encode(), self.rev)
        return Event("put", key, self.items[key][0], self.rev)

    def delete(self, key: str) -> Event:
        self.rev += 1
        del self.items[key]
        return Event("delete", key, b"", self.rev)

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        return [Item(k, v, r, r) for k, (v, r) in sorted(self.items.items())], self.rev

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        if self.compacted:
            self.compacted = False
            raise Compacted(start_revision, self.rev)
        while True:
            ev = await self.events.get()
            if isinstance(ev, Exception):
                raise ev
            yield ev


async def _until(cond: object, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_informer_follows_the_store() -> None:
    async def body() -> None:
        store = FakeStore()
        store.put("/p/a", 1)
        changes: list[tuple[str, object, object]] = []
        inf = Informer(store, "/p/", Doc, lambda n, old, new: changes.append((n, old, new)), max_backoff=0.01)  # type: ignore[arg-type]
        inf.start()
        assert await inf.wait_synced(2)
        assert inf.get("a") == Doc(v=1) and inf.relists == 1

        # Events arrive in order.
        await store.events.put(store.put("/p/b", 2))
        await _until(lambda: inf.get("b") == Doc(v=2))

        # A local write is visible at once; the watch's copy of the same write
        # and anything older change nothing.
        ev = store.put("/p/b", 3)
        inf.apply_local("b", Doc(v=3), ev.mod_revision)
        assert inf.get("b") == Doc(v=3)
        n = len(changes)
        await store.events.put(ev)
        await _until(lambda: inf.revision == ev.mod_revision)
        assert len(changes) == n
        inf.apply_local("b", Doc(v=2), ev.mod_revision - 1)  # stale: the watch is past it
        assert inf.get("b") == Doc(v=3)

        # The store goes away: stale until a list succeeds; what was deleted meanwhile is gone.
        store.delete("/p/a")
        await store.events.put(StoreUnavailable("gone"))
        await _until(lambda: inf.relists == 2)
        assert inf.synced and inf.get("a") is None and inf.get("b") == Doc(v=3)
        assert ("a", Doc(v=1), None) in changes

        # A compacted revision: list again.
        store.compacted = True
        store.put("/p/c", 4)
        await store.events.put(StoreUnavailable("gone"))
        await _until(lambda: inf.relists == 4)  # one list hit Compacted on its watch, the next one watches
        assert inf.get("c") == Doc(v=4)
        await inf.stop()
        assert not inf.synced

    asyncio.run(body())


def test_the_watch_bringing_back_an_expected_write_is_not_parsed() -> None:
    async def body() -> None:
        store = FakeStore()
        inf = Informer(store, "/p/", Doc, max_backoff=0.01)  # type: ignore[arg-type]
        inf.start()
        assert await inf.wait_synced(2)

        # This process is about to write exactly these bytes: the watch's copy
        # is the document it said, not a parse of the bytes.
        mine = Doc(v=1)
        ev = store.put("/p/a", 1)
        inf.expect("a", ev.value, mine)
        await store.events.put(ev)
        await _until(lambda: inf.revision == ev.mod_revision)
        assert inf.get("a") is mine and inf.parsed == 0

        # The write failed (or another writer won): other bytes come, and are parsed.
        inf.expect("a", Doc(v=2).model_dump_json().encode(), Doc(v=2))
        ev = store.put("/p/a", 3)
        await store.events.put(ev)
        await _until(lambda: inf.revision == ev.mod_revision)
        assert inf.get("a") == Doc(v=3) and inf.parsed == 1
        # An expectation is used once: the same bytes written again are parsed.
        ev = store.put("/p/a", 3)
        await store.events.put(ev)
        await _until(lambda: inf.revision == ev.mod_revision)
        assert inf.parsed == 2
        await inf.stop()

    asyncio.run(body())
