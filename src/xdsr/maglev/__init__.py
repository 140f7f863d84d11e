"""Maglev consistent-hashing tables: which backend each slot of a service sends to.

The rule is a contract between all LB nodes of a group (docs/maglev.md):
given the same backend set and table size, every node builds the same table.

Modules:
  rule     the population rule: MaglevBackend, permutations, the reference
           (oracle) build
  maglev   the fast builder, build_table
  sizing   table sizes (default_table_size, stable_table_size)
  measure  slot shares, disruption, the builder's benchmark
  primes   is_prime, next_prime

The builder needs numpy; the prime helpers and the sizing do not, and are
imported by the value checks that the Octavia driver loads into Octavia's
API process. So the numpy modules' names are loaded on first use, not with
the package.
"""

from __future__ import annotations

import importlib
from typing import Any

from xdsr.maglev.primes import is_prime, next_prime
from xdsr.maglev.sizing import default_table_size, stable_table_size

# Loaded on first use: these modules import numpy.
_LAZY = {
    "BuildTimes": "measure",
    "MaglevBackend": "rule",
    "bench_build": "measure",
    "build_table": "maglev",
    "disruption": "measure",
    "permutation_params": "rule",
    "reference_build_table": "rule",
    "slot_counts": "measure",
}

__all__ = [*_LAZY, "default_table_size", "is_prime", "next_prime", "stable_table_size"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"xdsr.maglev.{module}"), name)
