"""The Maglev population rule (Eisenbud et al., NSDI 2016, with weights):
what every LB node of a group must compute identically from the same
backend set -- a contract (docs/maglev.md); changing any detail of it would
make nodes disagree and reset connections during a rolling upgrade.

Here: the backend as the rule sees it, each backend's permutation, the
checks on the inputs, and :func:`reference_build_table`, the rule
transcribed literally and kept as the oracle the fast builder
(maglev.py) must equal.
"""

from __future__ import annotations

import hashlib
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xdsr.maglev.primes import is_prime


@dataclass(frozen=True)
class MaglevBackend:
    """A backend as the table builder sees it: an identity and a weight.

    ``id`` is what the permutation is hashed from, so it must be stable across
    nodes and restarts (e.g. the backend's MAC/VLAN or configured name), never
    an index. ``weight`` 0 keeps the backend in the set but gives it no slots
    (drained): the table indexes still refer to the caller's sequence.
    """

    id: str
    weight: int = 1

    def __post_init__(self) -> None:
        if type(self.id) is str and type(self.weight) is int and self.weight >= 0:
            return  # the common case, checked at once (a whole group's backends are made at once)
        if not isinstance(self.id, str):
            raise TypeError(f"backend id must be str, not {type(self.id).__name__}")
        if isinstance(self.weight, bool):
            raise TypeError("backend weight must be int, not bool")
        try:  # accept numpy integers etc., but store a plain int (hashing, equality)
            object.__setattr__(self, "weight", operator.index(self.weight))
        except TypeError:
            raise TypeError(f"backend weight must be int, not {type(self.weight).__name__}") from None
        if self.weight < 0:
            raise ValueError(f"backend {self.id!r}: weight must be >= 0, got {self.weight}")


def _digest(backend_id: str) -> bytes:
    """16 bytes: two little-endian 64-bit hashes of the backend, for its
    offset and its skip. blake2b rather than Python's ``hash`` because the
    table must be the same in every process on every node (``hash`` of str
    is salted per process)."""
    return hashlib.blake2b(backend_id.encode(), digest_size=16).digest()


def permutation_params(backend_id: str, table_size: int) -> tuple[int, int]:
    """``(offset, skip)`` of a backend: its permutation is ``(offset + j*skip) % M``."""
    d = _digest(backend_id)
    h1 = int.from_bytes(d[:8], "little")
    h2 = int.from_bytes(d[8:], "little")
    return h1 % table_size, h2 % (table_size - 1) + 1


def permutation_params_many(ids: Sequence[str], table_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The offsets and skips of many backends of one table size, as int64
    arrays: the very numbers :func:`permutation_params` gives one by one
    (a node receiving a whole group computes some 40,000 at once)."""
    raw = b"".join(map(_digest, ids))
    h = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    offsets = h[:, 0] % np.uint64(table_size)
    skips = h[:, 1] % np.uint64(table_size - 1) + np.uint64(1)
    return offsets.astype(np.int64), skips.astype(np.int64)


def active_backends(backends: Sequence[MaglevBackend], table_size: int) -> list[int]:
    """Check the inputs; return the indexes of the backends with weight > 0 in priority order.

    Priority is by id so that the table depends only on the set of backends,
    not on the order a config file or an API call happened to list them in.
    """
    if isinstance(table_size, bool) or not isinstance(table_size, int):
        raise TypeError(f"table_size must be int, not {type(table_size).__name__}")
    if not is_prime(table_size):
        raise ValueError(f"table_size must be prime, got {table_size}")
    for b in backends:
        if not isinstance(b, MaglevBackend):
            raise TypeError(f"expected MaglevBackend, got {type(b).__name__}")
    ids = Counter(b.id for b in backends)
    if len(ids) != len(backends):
        dups = sorted(i for i, c in ids.items() if c > 1)
        raise ValueError(f"duplicate backend ids: {dups[:5]}")
    order = sorted(range(len(backends)), key=lambda i: backends[i].id)
    active = [i for i in order if backends[i].weight > 0]
    if not active:
        raise ValueError("no backend has weight > 0 (an empty service has no table)")
    if table_size < len(active):
        raise ValueError(f"table_size {table_size} is smaller than the {len(active)} backends with weight > 0")
    return active


def out_dtype(n_backends: int) -> type[np.unsignedinteger]:
    return np.uint16 if n_backends <= 65535 else np.uint32


def reference_build_table(backends: Sequence[MaglevBackend], table_size: int) -> np.ndarray:
    """The population rule transcribed literally, one turn at a time.

    Deliberately naive (the paper's pseudocode plus the weight rule) so that
    it can be checked by reading; :func:`build_table` must equal it exactly.
    """
    active = active_backends(backends, table_size)
    m = table_size
    params = [permutation_params(backends[i].id, m) for i in active]
    weights = [backends[i].weight for i in active]
    w_max = max(weights)
    next_j = [0] * len(active)
    table = [-1] * m
    filled = 0
    r = 0
    while True:
        for k, i in enumerate(active):
            w = weights[k]
            if (r + 1) * w // w_max <= r * w // w_max:
                continue  # no turn for this backend in round r
            offset, skip = params[k]
            c = (offset + next_j[k] * skip) % m
            while table[c] >= 0:
                next_j[k] += 1
                c = (offset + next_j[k] * skip) % m
            table[c] = i
            next_j[k] += 1
            filled += 1
            if filled == m:
                return np.array(table, dtype=out_dtype(len(backends)))
        r += 1
