"""The Store in one process's memory: for unit tests of what runs on a store.

It honours the interface as etcd does (tests/store/test_contract.py runs the
same tests over both): one global revision counting every change, writes
conditional on a key's revision, watches from any revision still kept,
leases whose keys go when they expire. Nothing is persisted and nothing is
shared between processes, so it replaces etcd in tests only.

Time is the clock given (time.monotonic by default), so that a test can
expire a lease without waiting for it: advance its clock and call expire().
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from xdsr.store.base import Compacted, Conflict, Event, Item, Put, StoreUnavailable, put_each


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, Item] = {}
        self._key_lease: dict[str, int] = {}
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x7E57_0001)
        self._revision = 1  # etcd's revision of an empty store
        self._history: list[Event] = []  # every change after _compacted, in order
        self._revs: list[int] = []  # their revisions, to find where a watch starts
        self._compacted = 0
        self._changed = asyncio.Condition()
        self._closed = False
        self._expiring: set[asyncio.Future[None]] = set()

    # --- reading ---

    async def get(self, key: str) -> Item | None:
        await self.expire()
        return self._items.get(key)

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        await self.expire()
        return [self._items[k] for k in sorted(self._items) if k.startswith(prefix)], self._revision

    async def revision(self) -> int:
        self._live()
        return self._revision

    # --- writing ---

    def _check(self, key: str, expect: int | None) -> None:
        if expect is None:
            return
        current = self._items.get(key)
        actual = current.mod_revision if current is not None else 0
        if actual != expect:
            raise Conflict(key, expect, actual)

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        await self.expire()
        self._check(key, expect)
        if lease and lease not in self._leases:
            raise StoreUnavailable(f"lease {lease:x} not found")  # etcd answers an error too
        self._revision += 1
        old = self._items.get(key)
        created = old.create_revision if old is not None else self._revision
        self._items[key] = Item(key, bytes(value), self._revision, created)
        self._attach(key, lease or None)
        self._record(Event("put", key, bytes(value), self._revision))
        await self._notify()
        return self._revision

    async def put_many(self, puts: Sequence[Put]) -> list[int | Conflict]:
        # As etcd's put_many: all in one revision, unless one's expect fails.
        await self.expire()
        try:
            for p in puts:
                self._check(p.key, p.expect)
        except Conflict:
            return await put_each(self, puts)
        if not puts:
            return []
        self._revision += 1
        for p in puts:
            old = self._items.get(p.key)
            created = old.create_revision if old is not None else self._revision
            self._items[p.key] = Item(p.key, bytes(p.value), self._revision, created)
            self._attach(p.key, None)
            self._record(Event("put", p.key, bytes(p.value), self._revision))
        await self._notify()
        return [self._revision] * len(puts)

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        await self.expire()
        self._check(key, expect)
        if key not in self._items:
            return 0
        self._revision += 1
        self._remove(key)
        await self._notify()
        return self._revision

    def _remove(self, key: str) -> None:
        del self._items[key]
        self._attach(key, None)
        self._record(Event("delete", key, b"", self._revision))

    def _attach(self, key: str, lease: int | None) -> None:
        old = self._key_lease.pop(key, None)
        if old is not None and old in self._leases:
            self._leases[old].keys.discard(key)
        if lease is not None:
            self._key_lease[key] = lease
            self._leases[lease].keys.add(key)

    def _record(self, event: Event) -> None:
        self._history.append(event)
        self._revs.append(event.mod_revision)

    async def _notify(self) -> None:
        # After a whole change: a watch never sees half of a revision.
        async with self._changed:
            self._changed.notify_all()

    def compact(self, revision: int) -> None:
        """Forget the history before revision (as etcd's compaction): a watch
        from earlier raises Compacted."""
        cut = bisect.bisect_left(self._revs, revision)
        del self._history[:cut]
        del self._revs[:cut]
        self._compacted = max(self._compacted, revision)

    # --- watching ---

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:  # type: ignore[override]
        self._live()
        if start_revision < self._compacted:
            raise Compacted(start_revision, self._compacted)
        next_rev = start_revision
        while True:
            seen = self._revision
            start = bisect.bisect_left(self._revs, next_rev)
            pending = [e for e in self._history[start:] if e.key.startswith(prefix)]
            for e in pending:
                yield e
            # Changes made while the events above were consumed come next time.
            next_rev = max(next_rev, seen + 1)
            async with self._changed:
                await self._changed.wait_for(lambda n=next_rev: self._closed or self._revision >= n)
            self._live()

    # --- leases ---

    async def grant_lease(self, ttl: int) -> int:
        self._live()
        lease = next(self._lease_ids)
        self._leases[lease] = _Lease(ttl, self._clock() + ttl)
        # With the real clock the lease also ends on its own; a test's clock
        # ends it through expire().
        asyncio.get_running_loop().call_later(ttl + 0.05, self._expire_soon)
        return lease

    def _expire_soon(self) -> None:
        if not self._closed:
            task = asyncio.ensure_future(self.expire())
            self._expiring.add(task)
            task.add_done_callback(self._expiring.discard)

    async def keep_alive(self, lease: int) -> bool:
        await self.expire()
        self._live()
        got = self._leases.get(lease)
        if got is None:
            return False
        got.deadline = self._clock() + got.ttl
        return True

    async def revoke_lease(self, lease: int) -> None:
        self._live()
        await self._end(lease)

    async def _end(self, lease: int) -> None:
        got = self._leases.pop(lease, None)
        if got is None or not got.keys:
            return
        self._revision += 1  # as etcd: a lease's keys go in one transaction
        for key in sorted(got.keys):
            self._remove(key)
        await self._notify()

    async def expire(self) -> None:
        """End every lease whose time is up (deleting its keys)."""
        self._live()
        now = self._clock()
        for lease in [n for n, got in self._leases.items() if got.deadline <= now]:
            await self._end(lease)

    async def close(self) -> None:
        self._closed = True
        await self._notify()

    def _live(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")
