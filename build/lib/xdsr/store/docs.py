"""JSON documents on top of the Store: typed reads and compare-and-swap updates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel

from xdsr.store.base import Conflict, Store

M = TypeVar("M", bound=BaseModel)


async def get_doc(store: Store, key: str, model: type[M]) -> tuple[M, int] | None:
    """The document at key and its revision, or None."""
    item = await store.get(key)
    if item is None:
        return None
    return model.model_validate_json(item.value), item.mod_revision


def dump(doc: BaseModel) -> bytes:
    return doc.model_dump_json(exclude_defaults=False).encode()


async def update_doc(
    store: Store,
    key: str,
    model: type[M],
    change: Callable[[M | None], M | None] | Callable[[M | None], Awaitable[M | None]],
    attempts: int = 100,
) -> tuple[M | None, int]:
    """Read-modify-write with optimistic concurrency, retried on conflict.

    change gets the current document (None if absent) and returns the new
    one, or None to delete it; it may raise to abort. Concurrent writers
    never lose an update: a writer that lost the race re-reads and re-applies
    its change. Returns the written document and the revision.
    """
    for _ in range(attempts):
        got = await get_doc(store, key, model)
        current, rev = (got[0], got[1]) if got else (None, 0)
        new = change(current)
        if isinstance(new, Awaitable):
            new = await new
        try:
            if new is None:
                if got is not None:
                    await store.delete(key, expect=rev)
                return None, rev
            if new == current:
                return current, rev
            rev = await store.put(key, dump(new), expect=rev)
            return new, rev
        except Conflict:
            continue
    raise Conflict(key, -1, -1)
