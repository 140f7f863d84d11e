"""Primality helpers for sizing Maglev tables.

Maglev needs a prime table size M: a backend's permutation steps through the
table with a stride ``skip`` in ``[1, M - 1]``, and only when M is prime is
every such stride coprime to M, so that every permutation visits every slot.
"""

from __future__ import annotations

import functools

# Witnesses that make Miller-Rabin deterministic for every n < 3.3e24, far
# beyond any table size; a probabilistic test would let two LB nodes disagree.
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
_SMALL_PRIMES = _MR_BASES


# Cached: every table built checks its size, and a node builds thousands of
# tables of a few sizes at once.
@functools.lru_cache(maxsize=1024)
def is_prime(n: int) -> bool:
    """Whether ``n`` is prime (deterministic; exact for any size used in practice)."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    """The smallest prime ``>= n`` (so a prime argument is returned unchanged)."""
    if n <= 2:
        return 2
    candidate = n | 1  # even numbers above 2 are never prime
    while not is_prime(candidate):
        candidate += 2
    return candidate
