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
    known: tuple[M | None, int] | None = None,
    encode: Callable[[M], bytes] = dump,
) -> tuple[M | None, int]:
    """Read-modify-write with optimistic concurrency, retried on conflict.

    change gets the current document (None if absent) and returns the new
    one, or None to delete it; it may raise to abort. Concurrent writers
    never lose an update: a writer that lost the race re-reads and re-applies
    its change. Returns the written document and the revision.

    known: (document or None, revision; 0 = absent) from a copy of the store
    the caller keeps (an informer), tried first instead of reading: the
    write is conditional on that revision all the same, so a stale copy
    costs a conflict and a read, never a lost update. Only a write is taken
    from the copy: a refusal (change or encode raised) or a no-op is decided
    again on what the store holds.

    encode: the bytes written for a document (dump); it may refuse one by raising.
    """
    if known is not None:
        current, rev = known
        data = b""
        try:
            new = change(current)
            if isinstance(new, Awaitable):
                new = await new
            if new is not None and new != current:
                data = encode(new)
        except Exception:
            new = current  # decided again below, on the store's document
        try:
            if new is None and current is not None:
                await store.delete(key, expect=rev)
                return None, rev
            if new is not None and new != current:
                rev = await store.put(key, data, expect=rev)
                return new, rev
        except Conflict:
            pass
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
            rev = await store.put(key, encode(new), expect=rev)
            return new, rev
        except Conflict:
            continue
    raise Conflict(key, -1, -1)
