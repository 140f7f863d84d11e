"""update_doc from a copy the caller keeps (`known`): one conditional write
when the copy is current; when it is stale, a conflict, a read, and the
change applied to what the store holds — nothing lost, and a refusal or a
no-op decided on the store's document, never on the copy."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from xdsr.store.docs import dump, get_doc, update_doc
from xdsr.store.memory import MemoryStore


class Doc(BaseModel):
    items: list[str] = []
    name: str = ""


class Refused(Exception):
    pass


def add(item: str):  # type: ignore[no-untyped-def]
    def change(current: Doc | None) -> Doc:
        doc = current or Doc()
        if item in doc.items:
            raise Refused(item)
        return doc.model_copy(update={"items": [*doc.items, item]})

    return change


def test_a_current_copy_costs_one_write_and_a_stale_one_loses_nothing() -> None:
    async def go() -> None:
        store = MemoryStore()
        doc, rev = await update_doc(store, "k", Doc, add("a"), known=(None, 0))
        assert doc == Doc(items=["a"])
        copy = (doc, rev)
        # Someone else writes meanwhile: the copy is stale.
        await store.put("k", dump(Doc(items=["a"], name="theirs")), expect=rev)
        doc, _ = await update_doc(store, "k", Doc, add("b"), known=copy)
        got = await get_doc(store, "k", Doc)
        assert got is not None and got[0] == Doc(items=["a", "b"], name="theirs") == doc
        # A create over an existing key is refused on the store's document.
        with pytest.raises(Refused):
            await update_doc(store, "k", Doc, add("b"), known=(None, 0))
        # A refusal the stale copy would make is decided again: the store's
        # document (without "c") takes the change.
        await store.put("k", dump(Doc(items=["x"])), expect=got[1])
        stale = (Doc(items=["c"]), got[1])
        doc, _ = await update_doc(store, "k", Doc, add("c"), known=stale)
        assert doc == Doc(items=["x", "c"])
        # A no-op on a stale copy is no answer either.
        latest = await get_doc(store, "k", Doc)
        assert latest is not None
        await store.put("k", dump(Doc(items=["y"])), expect=latest[1])
        doc, _ = await update_doc(store, "k", Doc, lambda cur: cur, known=latest)
        assert doc == Doc(items=["y"])

    asyncio.run(go())
