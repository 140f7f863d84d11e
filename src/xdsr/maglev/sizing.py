"""How many slots a service's Maglev table has: a prime about 100 slots per
backend, kept through membership changes while it stays fit. No numpy: the
agent and the checks size tables without loading the builder."""

from __future__ import annotations

from xdsr.maglev.primes import is_prime, next_prime


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

    Memory for xdsr: the data plane stores 1 byte per slot (2 beyond 255
    backends) and 16 bytes per backend, so a service costs about
    ``(factor + 16) * N`` bytes: 12 KB for 100 backends, 216 KB for 1000
    (2-byte slots), 864 KB for 4000 (and the builder's time grows with M too,
    see docs/maglev.md). ``minimum`` keeps tiny services balanced: with 2
    backends, 101 slots still split 51/50.

    This is a function of N: a service whose members change gets another
    size, and a table of another size sends almost every flow elsewhere
    (stable_table_size is what a changing service needs).
    """
    if n_backends < 0:
        raise ValueError(f"n_backends must be >= 0, got {n_backends}")
    return next_prime(max(minimum, factor * n_backends, 2))


# A service keeps its table size while it holds at least this many slots per
# weighted backend (shares then differ by at most 1/50 = 2 %) ...
MIN_SLOTS_PER_BACKEND = 50
# ... and at most this many (a table of 10007 slots for 10 backends costs
# 10 KB: memory is not worth a reshuffle until the table is far too big).
MAX_SLOTS_PER_BACKEND = 1000


def stable_table_size(current: int | None, n_backends: int) -> int:
    """The table size for a service with n_backends weighted backends that
    has `current` slots now: `current` while it is fit for n_backends, else
    default_table_size(n_backends).

    Why: Maglev moves only about 1/N of the flows when a backend joins or
    leaves *a table of the same size*. With another size the permutations
    change and nearly every flow lands elsewhere (adding an 11th backend to
    10 moves 91 % of the flows from 1009 to 1103 slots, 11 % at 1009); for a
    stateless L2DSR balancer that breaks every established connection that
    moved. So a service keeps its size through membership changes and is
    resized only when balance or memory demands it: growing from 4 to 255
    backends one by one resizes 5 times (at 9, 19, 39, 79 and 159 backends,
    each time to 100 x N), not 251 times.
    """
    want = default_table_size(n_backends)
    if current is None or current < 2 or not is_prime(current):
        return want
    if n_backends <= 1:
        return current  # one backend (or none) is balanced at any size
    if MIN_SLOTS_PER_BACKEND * n_backends <= current <= MAX_SLOTS_PER_BACKEND * n_backends:
        return current
    return want
