"""min / median / max of a benchmark's repetitions: how every bench reports a figure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, xs: Sequence[float]) -> Spread:
        return cls(min(xs), statistics.median(xs), max(xs))

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        return f"{self.median * scale:.{digits}f} ({self.min * scale:.{digits}f}-{self.max * scale:.{digits}f})"
