"""Measuring Maglev tables and their builder: each backend's share, the
flows a change moves, and how long a build takes (`xdsr bench dataplane`,
docs/maglev.md)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from xdsr.maglev.maglev import build_table
from xdsr.maglev.rule import MaglevBackend


def slot_counts(table: np.ndarray, n_backends: int) -> np.ndarray:
    """Slots per backend index (length ``n_backends``): the share of traffic each gets."""
    return np.bincount(np.asarray(table, dtype=np.int64), minlength=n_backends)


def disruption(old_table: np.ndarray, new_table: np.ndarray, old_ids: Sequence[str], new_ids: Sequence[str]) -> float:
    """Fraction of slots whose backend *identity* changed between two tables.

    Compared by id, not index, because a backend's index shifts whenever one
    before it in the caller's list comes or goes; what breaks connections is
    a flow landing on a different machine.
    """
    old_table = np.asarray(old_table)
    new_table = np.asarray(new_table)
    if old_table.shape != new_table.shape:
        raise ValueError(f"tables differ in size: {old_table.shape} vs {new_table.shape}")
    # Map ids to one shared numbering so that the comparison is vectorized.
    codes: dict[str, int] = {}
    old_codes = np.array([codes.setdefault(i, len(codes)) for i in old_ids], dtype=np.int64)
    new_codes = np.array([codes.setdefault(i, len(codes)) for i in new_ids], dtype=np.int64)
    moved = old_codes[old_table.astype(np.int64)] != new_codes[new_table.astype(np.int64)]
    return float(moved.mean()) if moved.size else 0.0


class BuildTimes(NamedTuple):
    """Wall-clock seconds of :func:`build_table` over the repeats."""

    min: float
    median: float
    max: float


def bench_build(m: int = 65537, n: int = 1000, repeat: int = 7) -> BuildTimes:
    """Time :func:`build_table` for ``n`` equal-weight backends and ``m`` slots.

    One untimed warm-up first, so imports and numpy's first-call costs do
    not count. Report the minimum as the builder's speed; the median and max
    show how much a busy machine adds.
    """
    backends = [MaglevBackend(f"10.0.{i // 256}.{i % 256}/vlan{100 + i % 7}") for i in range(n)]
    build_table(backends, m)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        build_table(backends, m)
        times.append(time.perf_counter() - t0)
    return BuildTimes(min(times), statistics.median(times), max(times))
