"""The (VIP, segment) pairs the data plane holds, counted as applies change
them: what BGP may announce (bgp.py), known after an apply without reading
every service again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from xdsr.model.checks import IPAddress

if TYPE_CHECKING:
    from xdsr.agent.rules import Built
    from xdsr.dataplane.model import ServiceKey

Pair = tuple[IPAddress, int]  # (VIP, segment id)


def held_pairs(built: Iterable[Built], installed: dict[ServiceKey, object]) -> list[Pair]:
    """One pair per service both built and installed (a service in the
    desired state that a failed apply left out is not announced)."""
    return [(b.service.key.vip, b.service.key.seg_id) for b in built if b.service.key in installed]


class HeldVips:
    """How many held services use each (VIP, segment); `version` moves only
    when a pair appears or goes, so that BGP re-decides only then."""

    def __init__(self, pairs: Iterable[Pair] = ()) -> None:
        self.counts: Counter[Pair] = Counter(pairs)
        self.version = 0

    def held(self) -> Iterable[Pair]:
        return self.counts.keys()

    def update(self, gone: Iterable[Pair], came: Iterable[Pair]) -> None:
        moved = False
        for p in came:
            self.counts[p] += 1
            moved |= self.counts[p] == 1
        for p in gone:
            left = self.counts[p] - 1
            if left > 0:
                self.counts[p] = left
            else:
                del self.counts[p]
                moved = True
        if moved:
            self.version += 1

    def reset(self, pairs: Iterable[Pair]) -> None:
        self.counts = Counter(pairs)
        self.version += 1
