"""An informer that knows what this process writes.

The watch brings this process's own writes back. When the put's answer
comes first, `apply_local` has taken the document already and the event is
skipped; when the event comes first (the watch and the put travel on two
connections, so either may), the informer would parse the document it was
written from: thousands of addresses for a load balancer of 255 members.
A write announced with `expect` is taken from memory instead, as long as
the event carries the very bytes that were written.
"""

from __future__ import annotations

from xdsr.store.informer import Informer, M


class WrittenInformer(Informer[M]):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._written: dict[str, tuple[bytes, M]] = {}
        self.parsed = 0  # documents parsed from the store (for tests)

    def expect(self, name: str, doc: M, value: bytes) -> None:
        """doc is about to be written under name, encoded as value."""
        self._written[name] = (value, doc)

    def forget(self, name: str) -> None:
        """The write announced did not happen (or is taken already)."""
        self._written.pop(name, None)

    def apply_local(self, name: str, doc: M, mod_revision: int) -> None:
        self._written.pop(name, None)
        super().apply_local(name, doc, mod_revision)

    def _parse(self, key: str, value: bytes) -> M | None:
        name = self._name(key)
        mine = self._written.get(name)
        if mine is not None and mine[0] == value:
            del self._written[name]
            return mine[1]
        self.parsed += 1
        return super()._parse(key, value)
