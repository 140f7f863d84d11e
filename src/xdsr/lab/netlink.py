"""The thread every pyroute2 call of a lab runs on."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class NetlinkThread:
    """Runs every pyroute2 call of a lab on one thread of its own.

    pyroute2's synchronous API drives an asyncio loop internally and fails
    ("This event loop is already running") in a thread whose loop runs --
    and the demo and operator tests are asyncio programs. A daemon thread
    also outlives the interpreter's thread shutdown, so an atexit teardown
    can still close the sockets.
    """

    def __init__(self, name: str) -> None:
        self._q: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, fut = item
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._q.put((fn, fut))
        return fut.result()

    def stop(self) -> None:
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._q.put(None)
            self._thread.join(5.0)
