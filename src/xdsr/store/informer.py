"""An in-memory copy of one key prefix, kept current by list + watch.

This is Kubernetes' informer: list the prefix, then watch from the list's
revision + 1; when the watch breaks (the store went away, or the revision was
compacted) mark the copy stale and list again. GETs are served from here, so
a read costs no store round trip.

Read-your-writes: a writer hands what it wrote to `apply_local` with the
write's revision. Entries remember their mod_revision, and the watch never
replaces an entry with an older one, so the local copy and the watch's
(later) copy of the same write agree, whichever comes first.

A writer may also say, before writing, which document the bytes it is
about to write are (`expect`): when the watch brings exactly those bytes
back, the document is taken as it is instead of parsed again (parsing a
load balancer of a few members costs as much as the API server's whole
work on the request to create it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from xdsr.store.base import Compacted, Conflict, Event, Item, Put, Store, StoreUnavailable

log = logging.getLogger("xdsr.informer")

M = TypeVar("M", bound=BaseModel)

# Called with (name, old document or None, new document or None) on every change.
OnChange = Callable[[str, "BaseModel | None", "BaseModel | None"], None]


class Informer(Generic[M]):
    def __init__(
        self,
        store: Store,
        prefix: str,
        model: type[M],
        on_change: OnChange | None = None,
        max_backoff: float = 1.0,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.model = model
        self._on_change = on_change
        self._max_backoff = max_backoff
        self._items: dict[str, tuple[M, int]] = {}
        self._expected: dict[str, tuple[bytes, M]] = {}  # name -> (bytes about to be written, their document)
        self.parsed = 0  # documents parsed from the store (tests count them)
        self.revision = 0  # the store revision this copy reflects, at least
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._advanced = asyncio.Event()  # set whenever revision grows
        self.relists = 0  # how many times the prefix was listed (for tests and metrics)
        self.down = False  # the last attempt to reach the store failed

    # --- reading ---

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float) -> bool:
        if self._synced.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout)
        return self._synced.is_set()

    def get(self, name: str) -> M | None:
        got = self._items.get(name)
        return got[0] if got else None

    def entry(self, name: str) -> tuple[M, int] | None:
        """(document, mod_revision) of one name, without copying the others."""
        return self._items.get(name)

    def values(self) -> list[M]:
        return [doc for doc, _ in self._items.values()]

    def entries(self) -> dict[str, tuple[M, int]]:
        """name -> (document, mod_revision); names are keys without the prefix."""
        return dict(self._items)

    async def wait_for(self, revision: int, timeout: float = 10.0) -> None:
        """Until this copy reflects at least the given store revision (a write
        of this process under the prefix, say)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < revision:
            self._advanced.clear()
            if self.revision >= revision:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.prefix}: revision {revision} not seen (at {self.revision})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)

    # --- lifecycle ---

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer {self.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._synced.clear()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                items, rev = await self.store.list(self.prefix)
                self._replace(items, rev)
                self.relists += 1
                self.down = False
                self._synced.set()
                backoff = 0.05
                async for event in self.store.watch(self.prefix, rev + 1):
                    self._apply_event(event)
                raise StoreUnavailable("the watch ended")
            except asyncio.CancelledError:
                raise
            except Compacted as exc:
                # Our revision is gone from the store's history: list again at once.
                log.info("%s: %s; listing again", self.prefix, exc)
                self._synced.clear()
            except StoreUnavailable as exc:
                if self._synced.is_set():
                    log.warning("%s: lost the store (%s); serving 503 until it is back", self.prefix, exc)
                self._synced.clear()
                self.down = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception:
                # A bug must not silently freeze the copy: mark it stale and start over.
                log.exception("%s: informer failed; listing again", self.prefix)
                self._synced.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    # --- changes ---

    def _parse(self, key: str, value: bytes) -> M | None:
        if self._expected:
            name = self._name(key)
            mine = self._expected.get(name)
            if mine is not None and mine[0] == value:
                del self._expected[name]
                return mine[1]
        self.parsed += 1
        try:
            return self.model.model_validate_json(value)
        except ValidationError as exc:
            log.error("%s: ignoring an invalid document: %s", key, exc)
            return None

    def _name(self, key: str) -> str:
        return key[len(self.prefix) :]

    def _replace(self, items: list[Item], rev: int) -> None:
        old = self._items
        new: dict[str, tuple[M, int]] = {}
        for item in items:
            doc = self._parse(item.key, item.value)
            if doc is not None:
                new[self._name(item.key)] = (doc, item.mod_revision)
        # A local write newer than this list stays: the watch will confirm it.
        for name, (doc, mod) in old.items():
            if mod > rev and (name not in new or new[name][1] < mod):
                new[name] = (doc, mod)
        self._items = new
        self._advance(rev)
        if self._on_change is not None:
            for name in old.keys() | new.keys():
                before, after = old.get(name), new.get(name)
                if before is None or after is None or before[1] != after[1]:
                    self._on_change(name, before[0] if before else None, after[0] if after else None)

    def _set(self, name: str, doc: M | None, mod: int) -> None:
        before = self._items.get(name)
        if doc is None:
            self._items.pop(name, None)
        else:
            self._items[name] = (doc, mod)
        if self._on_change is not None:
            self._on_change(name, before[0] if before else None, doc)

    def _apply_event(self, event: Event) -> None:
        name = self._name(event.key)
        current = self._items.get(name)
        if current is None or current[1] < event.mod_revision:
            if event.type == "delete":
                if current is not None:
                    self._set(name, None, event.mod_revision)
            else:
                doc = self._parse(event.key, event.value)
                if doc is not None:
                    self._set(name, doc, event.mod_revision)
        self._advance(event.mod_revision)

    def _advance(self, rev: int) -> None:
        if rev > self.revision:
            self.revision = rev
            self._advanced.set()

    def expect(self, name: str, value: bytes, doc: M) -> None:
        """This process is about to write `value`, which is `doc` (dumped):
        if the watch brings exactly these bytes, it is not parsed again. A
        write that fails leaves nothing wrong behind: the next bytes the
        watch brings for the name differ, and are parsed; `forget` drops it."""
        self._expected[name] = (value, doc)

    def forget(self, name: str) -> None:
        """The write announced with `expect` did not happen."""
        self._expected.pop(name, None)

    async def put_many(self, docs: Sequence[tuple[str, M, bytes, int | None]]) -> list[int | Conflict]:
        """Write documents under this prefix together (Store.put_many): (name,
        document, its bytes, expect) each. Each written one is in this copy
        at once (read-your-writes), and not parsed again when the watch
        brings it back; what each got, in order (a revision, or a Conflict)."""
        for name, doc, value, _ in docs:
            self.expect(name, value, doc)
        try:
            got = await self.store.put_many([Put(self.prefix + name, value, expect) for name, _, value, expect in docs])
        finally:
            for name, _, _, _ in docs:
                self.forget(name)
        for (name, doc, _, _), rev in zip(docs, got, strict=True):
            if not isinstance(rev, Conflict):
                self.apply_local(name, doc, rev)
        return got

    def apply_local(self, name: str, doc: M, mod_revision: int) -> None:
        """What this process just wrote at mod_revision, so that it reads its own writes."""
        self._expected.pop(name, None)
        if mod_revision <= self.revision:
            return  # the watch has delivered it already, or something newer
        current = self._items.get(name)
        if current is None or current[1] < mod_revision:
            self._set(name, doc, mod_revision)
