"""The fast Maglev table builder: the same table as the population rule's
literal transcription (rule.reference_build_table), fast enough to rebuild
large services on every change (milliseconds for 65537 slots).

See docs/maglev.md for how it reaches the sequential loop's result without
running one Python iteration per probe.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from xdsr.maglev.rule import (
    MaglevBackend,
    active_backends,
    out_dtype,
    permutation_params,
    permutation_params_many,
    reference_build_table,
)

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
    active = active_backends(backends, table_size)
    if table_size >= 2**31:
        # Beyond this the int64 arithmetic in the builder could overflow; a
        # table this size (4 GB of slots) is no use to the data plane anyway.
        raise ValueError(f"table_size {table_size} is too large (must be < 2**31)")
    dtype = out_dtype(len(backends))
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


# -- many small tables at once -----------------------------------------------
#
# A node that receives a whole group (a restart, a new node) builds thousands
# of small tables, most of the same shape (same size, same weights). One
# small table is fastest in the plain loop (~0.6 ms for 10 backends), but
# thousands are faster run side by side: the tables of a shape take their
# turns in the same order, so each turn of the population rule is taken in
# every table at once, with numpy. It is the same rule turn by turn, so the
# same tables.

# Fewer tables of one shape than this are built one by one (build_table): a
# batch pays numpy's per-call overhead once per turn (M turns), whatever its
# width. Measured here: about 30 ms per batch of 1009 slots plus 0.2 ms a
# table, against 0.6 ms a table alone.
_BATCH_MIN = 80
# Cells (tables x slots) per batch: the wider a batch, the fewer numpy calls
# per table; 4 M cells (4 MB of flags) for a whole group of 1009-slot tables.
_BATCH_CELLS = 1 << 22
# Empty slots left per table at which a batch switches from scanning forward
# to ranking the remaining empty slots (as _Builder._finish does): ranking
# costs about (empty slots)^2 per table, scanning m / empty per turn.
_BATCH_FINISH = 32


@functools.lru_cache(maxsize=256)
def _rounds(weights: tuple[int, ...], m: int) -> tuple[tuple[int, ...], ...]:
    """The local backend indexes taking a turn in each round (in priority
    order), by the reference's weight rule, until m turns are taken."""
    w_max = max(weights)
    out: list[tuple[int, ...]] = []
    taken = r = 0
    while taken < m:
        turn = tuple(k for k, w in enumerate(weights) if (r + 1) * w // w_max > r * w // w_max)
        if turn:
            out.append(turn[: m - taken])
            taken += len(out[-1])
        r += 1
    return tuple(out)


def _inverse_mod(a: np.ndarray, m: int) -> np.ndarray:
    """a^-1 mod the prime m, elementwise (a^(m-2) by squaring; m < 2**31)."""
    result = np.ones_like(a)
    base = a % m
    e = m - 2
    while e:
        if e & 1:
            result = result * base % m
        base = base * base % m
        e >>= 1
    return result


def _batch(off: np.ndarray, skip: np.ndarray, weights: tuple[int, ...], m: int) -> np.ndarray:
    """The tables (local backend index per slot) of T tables of one shape:
    off and skip are (T, n) permutation parameters, in priority order.

    One turn at a time, in every table at once: the tables of a shape have
    the same turn order (_rounds), so turn t is backend k's in each of them,
    and a turn's T agents are in T different tables: none competes with
    another. Each takes the first empty slot of its permutation from its
    pointer on, exactly as the sequential loop does; those whose next slot
    is taken look ahead a window of positions at once (about M / empty
    wide, so that one window usually finds an empty slot).
    """
    t_count, n = off.shape
    # int32 cannot overflow: only small tables come here (m <= _SMALL_TABLE,
    # so position x skip stays far below 2**31) and cells stay below
    # _BATCH_CELLS.
    off_k = np.ascontiguousarray(off.T, dtype=np.int32)  # (n, T): backend k's row is contiguous
    skip_k = np.ascontiguousarray(skip.T, dtype=np.int32)
    ptr = np.zeros((n, t_count), dtype=np.int32)  # each agent's next position
    base = np.arange(t_count, dtype=np.int32) * np.int32(m)
    filled = np.zeros(t_count * m, dtype=bool)
    out = np.empty(t_count * m, dtype=np.int32)
    order = [k for turn in _rounds(weights, m) for k in turn]
    finish_at = min(m, _BATCH_FINISH)
    steps: dict[int, np.ndarray] = {}
    for t, k in enumerate(order[: m - finish_at]):
        o, s, cur = off_k[k], skip_k[k], ptr[k]
        cell = base + (o + cur * s) % m
        who = np.flatnonzero(filled[cell])
        if len(who):
            # The stuck agents: position `at`, its slot `p`, their skips and tables.
            at, sk, tb = cur[who], s[who], base[who]
            p = cell[who] - tb
            w = max(2, m // (m - t))
            while len(who):
                step = steps.get(w)
                if step is None:
                    step = steps[w] = np.arange(1, w + 1, dtype=np.int32)
                c = (p[:, None] + step * sk[:, None]) % m + tb[:, None]  # the slots at at+1 .. at+w
                taken = filled[c]
                hit = ~taken.all(axis=1)
                first = taken.argmin(axis=1)[hit]
                got = who[hit]
                cur[got] = at[hit] + first + 1
                cell[got] = c[hit, first]
                miss = ~hit
                who, at, sk, tb = who[miss], at[miss] + w, sk[miss], tb[miss]
                p = (p[miss] + w * sk) % m
                w *= 2
        filled[cell] = True
        out[cell] = k
        cur += 1
    rest = order[m - finish_at :]
    if rest:
        # Every table has the same few empty slots left. Each backend's next
        # slot is the empty one earliest in its permutation (all before its
        # pointer are filled): rank the empty slots by position.
        rows = np.arange(t_count)
        empties = np.flatnonzero(~filled).reshape(t_count, finish_at) - base[:, None]
        off64, skip64 = off.astype(np.int64), skip.astype(np.int64)
        inv = _inverse_mod(skip64, m)
        pos = ((empties[:, None, :] - off64[:, :, None]) % m) * inv[:, :, None] % m  # (T, n, left)
        taken = np.zeros((t_count, finish_at), dtype=bool)
        for k in rest:
            c = np.where(taken, m, pos[:, k, :]).argmin(axis=1)
            taken[rows, c] = True
            out[base + empties[rows, c]] = k
    return out.reshape(t_count, m)


def build_tables(jobs: Sequence[tuple[Sequence[MaglevBackend], int]]) -> list[np.ndarray]:
    """[build_table(backends, table_size) for each job], the same tables,
    built side by side where many small tables share a shape."""
    out: list[np.ndarray | None] = [None] * len(jobs)
    shapes: dict[tuple[int, tuple[int, ...]], list[tuple[int, list[int]]]] = defaultdict(list)
    for i, (backends, m) in enumerate(jobs):
        active = active_backends(backends, m)
        if m > _SMALL_TABLE or len(active) == 1:
            out[i] = build_table(backends, m)
            continue
        shapes[(m, tuple(backends[a].weight for a in active))].append((i, active))
    for (m, weights), members in shapes.items():
        if len(members) < _BATCH_MIN:
            for i, _ in members:
                out[i] = build_table(*jobs[i])
            continue
        per = max(1, _BATCH_CELLS // m)
        for at in range(0, len(members), per):
            block = members[at : at + per]
            off, skip = permutation_params_many([jobs[i][0][a].id for i, active in block for a in active], m)
            local = _batch(off.reshape(len(block), -1), skip.reshape(len(block), -1), weights, m)
            for (i, active), row in zip(block, local, strict=True):
                out[i] = np.asarray(active, dtype=out_dtype(len(jobs[i][0])))[row]
    return out  # type: ignore[return-value]
