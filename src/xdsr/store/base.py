"""The store interface every control-plane component uses.

It is deliberately small — the operations Kubernetes' own storage layer
needs from etcd: read one key, list a prefix, write with optimistic
concurrency, delete, and watch a prefix from a revision. Values are bytes
(JSON documents in practice). Revisions are the store's global, monotonic
modification counter (etcd's revision).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or did not answer in time. Nothing can be
    assumed about a write that raised this (it may or may not have happened)."""


class Conflict(StoreError):
    """A conditional write failed: the key's revision was not the expected one."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected revision {expected}, found {actual} (0 = absent)")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    """A watch asked for history the store no longer keeps; list again."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(f"revision {requested} is compacted (oldest kept: {compact_revision})")
        self.requested = requested
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class Item:
    key: str
    value: bytes
    mod_revision: int  # revision of the last write to this key
    create_revision: int


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    key: str
    value: bytes  # empty for deletes
    mod_revision: int  # revision of this change


@dataclass(frozen=True)
class Put:
    """One write of put_many: as put(key, value, expect=expect)."""

    key: str
    value: bytes
    expect: int | None = None


async def put_each(store: Store, puts: Sequence[Put]) -> list[int | Conflict]:
    """put_many as separate puts, side by side: what each got, a revision
    or the Conflict that refused it (a store's fallback when its puts
    cannot, or can no longer, go together)."""

    async def one(p: Put) -> int | Conflict:
        try:
            return await store.put(p.key, p.value, expect=p.expect)
        except Conflict as exc:
            return exc

    return list(await asyncio.gather(*(one(p) for p in puts)))


class Store(Protocol):
    """Asynchronous key-value store with optimistic concurrency and watches."""

    async def get(self, key: str) -> Item | None:
        """The key's current item, or None."""
        ...

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        """Every item under prefix (sorted by key), and the store revision the
        list reflects: a watch from that revision + 1 misses nothing."""
        ...

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        """Write key; returns the new revision.

        expect=None writes unconditionally; expect=0 only if the key does not
        exist; expect=n only if the key's mod_revision is n — otherwise
        Conflict, and nothing is written. lease ties the key to a lease.
        """
        ...

    async def put_many(self, puts: Sequence[Put]) -> list[int | Conflict]:
        """Each put as put() does it (no lease), in as few requests as the
        store can: for etcd, one transaction for many of them, unless one's
        expect fails (then each alone, so the others still go). What each
        got, in order: its revision, or the Conflict that refused it.
        Puts written together may share one revision; none is ordered
        before another (as concurrent puts). A key appears at most once."""
        ...

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        """Delete key (conditionally, as put); the revision of the deletion,
        or 0 if the key did not exist."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Every change under prefix from start_revision on, in order, until
        the iterator is closed. Raises Compacted if start_revision is gone,
        StoreUnavailable if the store goes away (the caller re-lists)."""
        ...

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of ttl seconds; keys put with it vanish when it expires."""
        ...

    async def keep_alive(self, lease: int) -> bool:
        """Refresh a lease once; False if it has already expired."""
        ...

    async def revoke_lease(self, lease: int) -> None: ...

    async def close(self) -> None: ...
