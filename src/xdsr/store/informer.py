"""An informer: an in-memory copy of every document under a prefix, kept up
to date by list + watch, as Kubernetes controllers keep theirs.

Readers use the cache instead of the store; a change callback tells the
owner what changed. On Compacted or a lost store, the informer re-lists and
reports the difference, so no change is ever missed silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from xdsr.store.base import Compacted, Store, StoreUnavailable

log = logging.getLogger("xdsr.informer")

M = TypeVar("M", bound=BaseModel)


class Informer(Generic[M]):
    def __init__(
        self,
        store: Store,
        prefix: str,
        model: type[M],
        on_change: Callable[[str, M | None], None] | None = None,
        retry_delay: float = 0.5,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.model = model
        self.on_change = on_change
        self.items: dict[str, tuple[M, int]] = {}  # key -> (document, mod_revision)
        self.revision = 0  # the store revision the cache reflects
        self.synced = asyncio.Event()
        self._retry_delay = retry_delay
        self._advanced = asyncio.Condition()

    def get(self, key: str) -> M | None:
        got = self.items.get(key)
        return got[0] if got else None

    def _parse(self, key: str, value: bytes) -> M | None:
        try:
            return self.model.model_validate_json(value)
        except ValidationError as exc:
            # A document we cannot read is reported, not fatal: it may be
            # from a newer version of xdsr.
            log.error("ignoring unreadable document %s: %s", key, exc)
            return None

    def _set(self, key: str, doc: M | None, rev: int) -> None:
        if doc is None:
            if self.items.pop(key, None) is not None and self.on_change:
                self.on_change(key, None)
            return
        self.items[key] = (doc, rev)
        if self.on_change:
            self.on_change(key, doc)

    async def _advance(self, rev: int) -> None:
        async with self._advanced:
            self.revision = max(self.revision, rev)
            self._advanced.notify_all()

    async def wait_for(self, revision: int, timeout: float = 10.0) -> None:
        """Until the cache reflects at least this store revision."""
        async with self._advanced:
            await asyncio.wait_for(self._advanced.wait_for(lambda: self.revision >= revision), timeout)

    async def _relist(self) -> None:
        items, rev = await self.store.list(self.prefix)
        seen = set()
        for it in items:
            seen.add(it.key)
            old = self.items.get(it.key)
            if old is None or old[1] != it.mod_revision:
                doc = self._parse(it.key, it.value)
                if doc is not None:
                    self._set(it.key, doc, it.mod_revision)
        for key in [k for k in self.items if k not in seen]:
            self._set(key, None, rev)
        await self._advance(rev)
        self.synced.set()

    async def run(self) -> None:
        while True:
            try:
                await self._relist()
                async for ev in self.store.watch(self.prefix, self.revision + 1):
                    if ev.type == "delete":
                        self._set(ev.key, None, ev.mod_revision)
                    else:
                        doc = self._parse(ev.key, ev.value)
                        if doc is not None:
                            self._set(ev.key, doc, ev.mod_revision)
                    await self._advance(ev.mod_revision)
            except (Compacted, StoreUnavailable) as exc:
                log.warning("informer %s: %s; re-listing", self.prefix, exc)
                await asyncio.sleep(self._retry_delay)
