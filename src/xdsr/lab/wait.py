"""Waiting for a condition with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.05,
    what: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `predicate` until it returns something truthy and return that.

    Tests wait for conditions with a deadline instead of sleeping a guessed
    time: fast when the condition is met early, a clear error when it never
    is. Exceptions of the types in `ignore` count as "not yet" (the last one
    is chained to the TimeoutError).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore as exc:
            last_exc = exc
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(f"{what or getattr(predicate, '__name__', 'condition')} not met after {timeout}s") from (
                last_exc
            )
        time.sleep(min(interval, deadline - now))
