"""Maglev consistent-hashing tables: which backend each slot of a service sends to.

The rule is a contract between all LB nodes of a group (docs/maglev.md):
given the same backend set and table size, every node builds the same table.

The table builder needs numpy; the prime helpers do not, and are imported by
the value checks that the Octavia driver loads into Octavia's API process.
So the builder's names are loaded on first use, not with the package.
"""

from __future__ import annotations

import importlib
from typing import Any

from xdsr.maglev.primes import is_prime, next_prime

_BUILDER = (
    "BuildTimes",
    "MaglevBackend",
    "bench_build",
    "build_table",
    "default_table_size",
    "disruption",
    "permutation_params",
    "reference_build_table",
    "slot_counts",
    "stable_table_size",
)

__all__ = [*_BUILDER, "is_prime", "next_prime"]


def __getattr__(name: str) -> Any:
    if name in _BUILDER:
        return getattr(importlib.import_module("xdsr.maglev.maglev"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
