"""Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016).

Every LB node of a group must compute the very same table from the same
backend set, independently, so the population rule below is a contract
(docs/maglev.md); changing any detail of it would make nodes disagree and
reset connections during a rolling upgrade.

Two implementations of the one rule live here:

* :func:`reference_build_table`, a plain sequential transcription of the
  rule, kept as the oracle the tests compare against;
* :func:`build_table`, which produces the identical table fast enough to
  rebuild large services on every change (milliseconds for 65537 slots).
"""

from __future__ import annotations

import hashlib
import math
import operator
import statistics
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from xdsr.maglev.primes import is_prime, next_prime

__all__ = [
    "BuildTimes",
    "MaglevBackend",
    "bench_build",
    "build_table",
    "default_table_size",
    "disruption",
    "permutation_params",
    "reference_build_table",
    "slot_counts",
]


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


# ---------------------------------------------------------------------------
# Sizing


def default_table_size(n_backends: int, factor: int = 100, minimum: int = 101) -> int:
    """Smallest prime ``>= max(minimum, factor * n_backends)``.

    Why 100 x N (Eisenbud et al. use the same rule):

    * Balance: population hands out slots round-robin, so with equal weights
      each backend gets exactly ``floor(M/N)`` or ``ceil(M/N)`` slots; at
      M/N >= 100 the shares differ by at most about 1 %.
    * Disruption: when a backend leaves, its own 1/N of the slots must move
      (the ideal), and some other slots move too because preferences
      cascade. That collateral part shrinks as M/N grows. Measured at 100 x N
      (docs/maglev.md): removing one backend moves 1.2/N of the table in
      total for N=10, 2.6/N for N=100, 6.7/N for N=1000, i.e. 2.7 %, 1.6 %
      and 0.6 % of the *other* backends' slots. 1000 x N cuts that
      collateral part by 3-4x for ten times the memory; 10 x N raises it
      (up to 4x for small N) and breaks the 1 % balance.

    Memory for xdsr: the data plane stores 2 bytes per slot, 16 bytes per
    backend and a 64-byte header (in 64-byte elements), so a service costs
    about ``(2 * factor + 16) * N + 64`` bytes: 22 KB for 100 backends,
    216 KB for 1000, 864 KB for 4000 (and the builder's time grows with M
    too, see docs/maglev.md). ``minimum`` keeps tiny services balanced: with
    2 backends, 101 slots still split 51/50.
    """
    if n_backends < 0:
        raise ValueError(f"n_backends must be >= 0, got {n_backends}")
    return next_prime(max(minimum, factor * n_backends, 2))


# ---------------------------------------------------------------------------
# The contract: permutation and validation


def permutation_params(backend_id: str, table_size: int) -> tuple[int, int]:
    """``(offset, skip)`` of a backend: its permutation is ``(offset + j*skip) % M``.

    blake2b rather than Python's ``hash`` because the table must be the same
    in every process on every node (``hash`` of str is salted per process).
    """
    d = hashlib.blake2b(backend_id.encode(), digest_size=16).digest()
    h1 = int.from_bytes(d[:8], "little")
    h2 = int.from_bytes(d[8:], "little")
    return h1 % table_size, h2 % (table_size - 1) + 1


def _validate(backends: Sequence[MaglevBackend], table_size: int) -> list[int]:
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


def _out_dtype(n_backends: int) -> type[np.unsignedinteger]:
    return np.uint16 if n_backends <= 65535 else np.uint32


# ---------------------------------------------------------------------------
# The oracle


def reference_build_table(backends: Sequence[MaglevBackend], table_size: int) -> np.ndarray:
    """The population rule transcribed literally, one turn at a time.

    Deliberately naive (the paper's pseudocode plus the weight rule) so that
    it can be checked by reading; :func:`build_table` must equal it exactly.
    """
    active = _validate(backends, table_size)
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
                return np.array(table, dtype=_out_dtype(len(backends)))
        r += 1


# ---------------------------------------------------------------------------
# The fast builder
#
# State shared by both strategies below: ``filled`` (one byte per slot, plus a
# trailing byte that stays 0 and serves as the "end of candidates" sentinel),
# ``out`` (slot -> local backend index) and ``ptr``: for each backend the
# position in its permutation after the last slot it took. Every slot at a
# position < ptr is filled, which is what lets both strategies look only
# forward, exactly like the sequential pointer of the paper.

# Below this many turns per round, numpy's per-call overhead (a round costs a
# few dozen calls) exceeds the cost of simply running the turns in Python.
_GS_MIN_TURNS_PER_ROUND = 200
# Tables up to this many slots are built by the sequential reference loop:
# measured here, it is faster than the vectorized builder below ~2000 slots
# (0.65 ms against 1.0 ms for 1009 slots and 10 backends).
_SMALL_TABLE = 2048


def _finish_threshold(m: int) -> int:
    """Empty slots left at which to switch to :meth:`_Builder._finish`.

    Scanning forward costs ~M/empty probes per turn (~15 ns each in numpy),
    finishing costs a few microseconds per turn plus one pass over the
    empty slots: they break even around empty = M/256. Capped so that the
    finisher's (backends x empty slots) matrix stays around a million entries.
    """
    return min(1024, max(64, m // 256))


# Cap on temporary 2-D scratch arrays (elements), to bound memory.
_SCRATCH = 1 << 20
# Sizing of the candidate lists of _python_batch: a list that runs out is
# extended (_extend, ~50 us), one that is too long wastes scanning. These
# values make extension rare (a few per build).
_LIST_MARGIN = 4
_LIST_SLACK = 1.2


class _Builder:
    def __init__(self, offsets: list[int], skips: list[int], weights: list[int], m: int) -> None:
        self.m = m
        self.n = len(weights)
        self.off = np.array(offsets, dtype=np.int64)
        self.skip = np.array(skips, dtype=np.int64)
        g = math.gcd(*weights)
        self.w = [w // g for w in weights]  # same turns, smaller numbers
        self.w_max = max(self.w)
        self.equal = self.w_max == 1
        # r never exceeds m + 1 (the heaviest backend fills a slot every round),
        # so int64 is safe unless weights are astronomically large.
        wdtype = np.int64 if (m + 2) * self.w_max < 2**62 else object
        self.w_np = np.array(self.w, dtype=wdtype)
        self.turns_per_round = sum(self.w) / self.w_max
        self.filled = bytearray(m + 1)
        self.filled_np = np.frombuffer(self.filled, dtype=np.uint8)[:m]
        self.out = array("i", bytes(4 * m))
        self.out_np = np.frombuffer(self.out, dtype=np.int32)
        self.ptr = np.zeros(self.n, dtype=np.int64)
        self.n_filled = 0
        self.r = 0

    # -- turn schedule ------------------------------------------------------

    def _turns(self, rounds: int, limit: int) -> np.ndarray:
        """Local backend indexes of the turns of the next ``rounds`` rounds, in order, at most ``limit``.

        Advances ``r``. Generated per backend rather than per (round,
        backend) pair because with skewed weights most pairs have no turn:
        backend i has had ``(r * w_i) // w_max`` turns before round r, so its
        j-th turn (from 0) falls in round ``ceil((j + 1) * w_max / w_i) - 1``.
        """
        r0, r1 = self.r, self.r + rounds
        self.r = r1
        n = self.n
        if self.equal:
            return np.tile(np.arange(n, dtype=np.int64), rounds)[:limit]
        w, w_max = self.w_np, self.w_max
        if rounds == 1:
            return np.flatnonzero((r0 + 1) * w // w_max > r0 * w // w_max)[:limit]
        j0 = (r0 * w) // w_max
        count = ((r1 * w) // w_max - j0).astype(np.int64)
        total = int(count.sum())
        who = np.repeat(np.arange(n, dtype=np.int64), count)
        j = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        j = j.astype(w.dtype) + np.repeat(j0, count)
        wb = np.repeat(w, count)
        rnd = (((j + 1) * w_max + wb - 1) // wb - 1).astype(np.int64)
        key = np.sort(rnd * n + who)  # round by round, priority order within a round
        return (key % n)[:limit]

    # -- shared -------------------------------------------------------------

    def run(self) -> np.ndarray:
        m = self.m
        finish_at = _finish_threshold(m)
        use_gs = self.turns_per_round >= _GS_MIN_TURNS_PER_ROUND
        if use_gs:
            self.block = np.full(m, self.n, dtype=np.int32)
        while True:
            empty = m - self.n_filled
            if empty <= finish_at:
                self._finish(np.zeros(0, dtype=np.int64))
                break
            if use_gs:
                turns = self._turns(1, empty)
            else:
                # A batch fills at most ~1/4 of the empty slots so that few of
                # the candidates listed at its start go stale during it.
                want = max(1, empty // 4)
                rounds = max(1, int(want / self.turns_per_round))
                turns = self._turns(rounds, empty)
            # Turns may be split anywhere: running a prefix of the sequence
            # first and the rest after is the sequential order itself.
            head, tail = turns[: empty - finish_at], turns[empty - finish_at :]
            if use_gs:
                self._gs_round(head)
            else:
                self._python_batch(head)
            if len(tail):
                self._finish(tail)
                break
        return self.out_np

    def _scan(self, bs: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Empty slots at positions [start, start+length) of the permutations of backends ``bs``.

        Returns (slots, positions, counts per backend), grouped by backend in
        permutation order.
        """
        total = int(length.sum())
        seg0 = np.cumsum(length) - length
        m = self.m
        first = (self.off[bs] + start * self.skip[bs]) % m  # int64: start * skip may exceed 2**31
        # Step from each backend's first slot; int32 is much faster when it cannot overflow.
        dt = np.int32 if total == 0 or (int(length.max()) + 1) * m < 2**31 else np.int64
        step = np.arange(total, dtype=dt) - np.repeat(seg0.astype(dt), length)
        slots = (
            (np.repeat(first.astype(dt), length) + step * np.repeat(self.skip[bs].astype(dt), length)) % dt(m)
        ).astype(np.intp)
        keep = self.filled_np[slots] == 0
        counts = np.add.reduceat(keep, seg0) if total else np.zeros(len(bs), dtype=np.int64)
        pos = step[keep].astype(np.int64) + np.repeat(start, counts)
        return slots[keep], pos, counts.astype(np.int64)

    # -- strategy 1: sequential turns over pre-filtered candidate lists ------

    def _python_batch(self, turns: np.ndarray) -> None:
        """Run ``turns`` one by one exactly as the sequential rule says.

        The per-slot probing that makes the naive loop slow (a backend skips
        ~M/empty filled slots per turn late in the fill) is done up front in
        numpy: each backend gets the list of its next preferences that are
        still empty, so the Python loop below rarely probes more than once.
        """
        m = self.m
        empty = m - self.n_filled
        t = np.bincount(turns, minlength=self.n)
        bs = np.flatnonzero(t)
        tb = t[bs]
        # A backend needs one candidate per turn, plus those that other turns
        # of the batch take first (at most len(turns)/empty of them; doubled
        # for margin). About empty/m of the positions scanned are empty.
        stale = 2.0 * len(turns) / empty
        need = np.ceil(tb * (1.0 + stale)) + _LIST_MARGIN
        length = np.minimum(m - self.ptr[bs], np.ceil(need * (_LIST_SLACK * m / empty)).astype(np.int64) + 1)
        slots, pos, counts = self._scan(bs, self.ptr[bs], length)

        # Lay the lists out back to back, each followed by a sentinel slot m
        # (filled[m] is always 0, so the probe loop stops on it) whose
        # position records where the scan stopped, for extension.
        g = len(bs)
        grp = np.repeat(np.arange(g), counts)
        dest = np.arange(len(slots)) + grp
        flat = np.full(len(slots) + g, m, dtype=np.int64)
        flat[dest] = slots
        flat_pos = np.empty(len(slots) + g, dtype=np.int64)
        flat_pos[dest] = pos
        ends = np.cumsum(counts) + np.arange(g)
        flat_pos[ends] = self.ptr[bs] + length
        cur_np = np.zeros(self.n, dtype=np.int64)
        cur_np[bs] = ends - counts

        cand = flat.tolist()
        cand_pos = flat_pos.tolist()
        cur = cur_np.tolist()
        filled = self.filled
        out = self.out
        for b in turns.tolist():
            i = cur[b]
            s = cand[i]
            while filled[s]:
                i += 1
                s = cand[i]
            if s == m:
                i = self._extend(b, cand, cand_pos, cand_pos[i])
                s = cand[i]
            filled[s] = 1
            out[s] = b
            cur[b] = i + 1
        self.n_filled += len(turns)
        bl = bs.tolist()
        self.ptr[bs] = [cand_pos[cur[b] - 1] + 1 for b in bl]

    def _extend(self, b: int, cand: list[int], cand_pos: list[int], start: int) -> int:
        """Append more empty preferences of backend ``b`` from position ``start``; return where they begin.

        Rare (the lists are sized generously); an empty slot always exists at
        some position >= start because everything before it is now filled.
        """
        m = self.m
        empty = max(1, m - int(self.filled_np.sum()))
        bs = np.array([b])
        while True:
            length = np.array([min(m - start, max(64, 4 * (m // empty + 1)))], dtype=np.int64)
            slots, pos, _ = self._scan(bs, np.array([start], dtype=np.int64), length)
            start += int(length[0])
            if len(slots):
                break
        first = len(cand)
        cand.extend(slots.tolist())
        cand.append(m)
        cand_pos.extend(pos.tolist())
        cand_pos.append(start)
        return first

    # -- strategy 2: one round at a time, vectorized across backends --------

    def _advance(self, who: np.ndarray, cur: np.ndarray, slots: np.ndarray, free_est: int) -> None:
        """Move each agent in ``who`` strictly forward to the next preference it could still get.

        Skipped: slots filled before the round and slots already held by a
        higher-priority agent of this round (holders only ever improve, so
        the agent would be rejected there anyway; skipping them saves
        Gale-Shapley iterations). Both are one test, ``block[s] > agent``.
        Looks ahead a window of positions at a time, ~2 M / free_est wide so
        that one window usually suffices, doubled for those it did not.
        """
        m = self.m
        block = self.block
        window = 2 * (m // max(1, free_est)) + 2
        while len(who):
            w = max(1, min(window, _SCRATCH // len(who)))
            # int32 arithmetic is several times faster than int64 here; use it
            # whenever slot + w * skip cannot overflow.
            dt = np.int32 if (w + 1) * m < 2**31 else np.int64
            steps = np.arange(1, w + 1, dtype=dt)
            s = ((slots[who].astype(dt)[:, None] + steps * self.skip_r[who].astype(dt)[:, None]) % dt(m)).astype(
                np.intp
            )
            free = block[s] > who[:, None].astype(np.int32)
            hit = free.any(axis=1)
            first = free.argmax(axis=1)
            found = who[hit]
            cur[found] += first[hit] + 1
            slots[found] = s[hit, first[hit]]
            miss = ~hit
            cur[who[miss]] += w
            slots[who[miss]] = s[miss, -1]
            who = who[miss]
            window *= 2

    def _gs_round(self, agents: np.ndarray) -> None:
        """One round, vectorized: parallel Gale-Shapley, equal to the sequential order.

        Within a round every backend takes its first preference still empty,
        in priority order (serial dictatorship). Every slot ranks backends by
        that same priority, so the stable matching is unique and equals the
        serial-dictatorship result; proposer-side Gale-Shapley finds it, and
        it may run its proposals in parallel. Proposals only go to slots
        that were empty at the start of the round.
        """
        m = self.m
        empty = m - self.n_filled
        k = len(agents)
        block = self.block  # -1 filled, n empty, else the best agent holding it this round
        self.skip_r = self.skip[agents]
        cur = self.ptr[agents].copy()
        slots = (self.off[agents] + cur * self.skip_r) % m
        idx = np.arange(k, dtype=np.int64)
        self._advance(idx[block[slots] < 0], cur, slots, empty)
        proposers = idx
        while True:
            np.minimum.at(block, slots[proposers], proposers.astype(np.int32))
            lost = np.flatnonzero(block[slots] != idx)
            if not len(lost):
                break
            self._advance(lost, cur, slots, empty - (k - len(lost)))
            proposers = lost
        # The slots held at the end are exactly the agents' final slots: a
        # slot, once held, only changes hands to a better agent.
        block[slots] = -1
        self.filled_np[slots] = 1
        self.out_np[slots] = agents
        self.ptr[agents] = cur + 1
        self.n_filled += k

    # -- the last few slots --------------------------------------------------

    def _finish(self, turns: np.ndarray) -> None:
        """Fill the last few empty slots, starting with ``turns``, looking from the slots' side.

        Near the end a backend probes ~M/empty filled slots per turn. With few
        empty slots left it is cheaper to compute each empty slot's position
        in each backend's permutation, ``(s - offset) * skip^-1 mod M``, and
        take the smallest: every position before the backend's pointer is
        filled, so that is exactly the slot the forward scan would reach.
        """
        m = self.m
        empties = np.flatnonzero(self.filled_np == 0)
        n_empty = len(empties)
        parts = [turns]
        have = len(turns)
        while have < n_empty:
            rounds = max(1, math.ceil((n_empty - have) / self.turns_per_round))
            more = self._turns(rounds, n_empty - have)
            parts.append(more)
            have += len(more)
        turns = np.concatenate(parts)
        users, row_of = np.unique(turns, return_inverse=True)
        inv_skip = np.array([pow(int(k), -1, m) for k in self.skip[users]], dtype=np.int64)
        # m < 2**31, so the product stays below 2**62.
        pos = ((empties[None, :] - self.off[users][:, None]) * inv_skip[:, None]) % m
        out = self.out_np
        taken = np.zeros(n_empty, dtype=np.int64)  # m once taken: larger than any position
        for b, row in zip(turns.tolist(), row_of.tolist(), strict=True):
            c = int(np.maximum(pos[row], taken).argmin())
            taken[c] = m
            out[empties[c]] = b
        self.filled_np[empties] = 1
        self.n_filled = m


def build_table(backends: Sequence[MaglevBackend], table_size: int) -> np.ndarray:
    """The Maglev table: slot -> index into ``backends`` (identical to :func:`reference_build_table`).

    See docs/maglev.md for the rule and for how this reaches the same result
    as the sequential loop without running one Python iteration per probe.
    """
    active = _validate(backends, table_size)
    if table_size >= 2**31:
        # Beyond this the int64 arithmetic in the builder could overflow; a
        # table this size (4 GB of slots) is no use to the data plane anyway.
        raise ValueError(f"table_size {table_size} is too large (must be < 2**31)")
    dtype = _out_dtype(len(backends))
    if len(active) == 1:  # it takes every slot, whatever its permutation
        return np.full(table_size, active[0], dtype=dtype)
    if table_size <= _SMALL_TABLE:
        # Below this the plain loop beats numpy's per-call overhead (it is the
        # same rule, so the same table).
        return reference_build_table(backends, table_size)
    params = [permutation_params(backends[i].id, table_size) for i in active]
    builder = _Builder(
        [p[0] for p in params],
        [p[1] for p in params],
        [backends[i].weight for i in active],
        table_size,
    )
    local = builder.run()
    return np.asarray(active, dtype=dtype)[local]


# ---------------------------------------------------------------------------
# Measuring tables


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
