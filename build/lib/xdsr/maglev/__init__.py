"""Maglev consistent-hashing tables: which backend each slot of a service sends to.

The rule is a contract between all LB nodes of a group (docs/maglev.md):
given the same backend set and table size, every node builds the same table.
"""

from xdsr.maglev.maglev import (
    BuildTimes,
    MaglevBackend,
    bench_build,
    build_table,
    default_table_size,
    disruption,
    permutation_params,
    reference_build_table,
    slot_counts,
)
from xdsr.maglev.primes import is_prime, next_prime

__all__ = [
    "BuildTimes",
    "MaglevBackend",
    "bench_build",
    "build_table",
    "default_table_size",
    "disruption",
    "is_prime",
    "next_prime",
    "permutation_params",
    "reference_build_table",
    "slot_counts",
]
