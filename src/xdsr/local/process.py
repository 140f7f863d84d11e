"""The one wrapper around a child process that the local components, the lab
and the tests start: a session of its own, stopped by process group.

A child runs in a new session, so its pid is its process group id and one
signal reaches whatever it forked (Octavia's driver agent forks its
listeners, `ip netns exec` execs the real program). Stopping sends a signal
to the group, waits a grace period, then SIGKILLs what is left of the group,
also when the leader has exited already. A stopped child can be started
again (the fault tests restart components).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM
from typing import IO, Any, Self


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM recorded, not handled, inside the block; handled on leaving it.
    Only the main thread handles signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: got.append(s)) for sig in (SIGINT, SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in got:
            signal.raise_signal(sig)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One child process, started with start() and stopped with stop().

    With a log_path, stdout and stderr are appended to that file (one header
    line per start); otherwise popen_kwargs say where they go (they are
    passed to subprocess.Popen on every start).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        **popen_kwargs: Any,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.popen_kwargs = popen_kwargs
        self.popen: subprocess.Popen[Any] | None = None

    def start(self) -> Self:
        """Start the process unless it runs."""
        if self.running:
            return self
        # A signal whose handler raises (`xdsr up` stops that way) must not
        # land between the fork and self.popen being set: the child would
        # run on with nobody to stop it. Held back until then, and raised
        # again once the child can be found.
        with _signals_held():
            if self.log_path is not None:
                with open(self.log_path, "ab") as logf:
                    logf.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
                    logf.flush()
                    self.popen = subprocess.Popen(
                        self.argv, stdout=logf, stderr=logf, start_new_session=True, env=self.env, **self.popen_kwargs
                    )
            else:
                self.popen = subprocess.Popen(self.argv, start_new_session=True, env=self.env, **self.popen_kwargs)
        return self

    # -- state -----------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    @property
    def stdout(self) -> IO[Any] | None:
        return self.popen.stdout if self.popen is not None else None

    def poll(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status; subprocess.TimeoutExpired if still running."""
        return self.popen.wait(timeout) if self.popen is not None else None

    def wait_ready(
        self, ready: Callable[[], bool], timeout: float, what: str = "ready", interval: float = 0.05
    ) -> None:
        """Poll ready() until it is true; RuntimeError as soon as the process
        exits, TimeoutError (and the process left running) after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not {what} after {timeout}s:\n{self.log_tail()}")
            time.sleep(interval)

    def log_tail(self, n: int = 3000) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- stopping --------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send sig to the process group (no error if it is gone)."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = SIGTERM, grace: float = 10.0) -> int | None:
        """sig to the group, SIGKILL to what is left of it after grace;
        returns the exit status (None if it was never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # The leader may be gone and its group not.
        self.signal(SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        return self.popen.returncode

    def kill(self) -> int | None:
        return self.stop(SIGKILL)

    def close_pipes(self) -> None:
        """Release the pipes of a stopped child."""
        if self.popen is None:
            return
        for f in (self.popen.stdout, self.popen.stdin):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()

    def __repr__(self) -> str:
        pid = self.popen.pid if self.popen is not None else None
        return f"{type(self).__name__}({self.name!r}, pid={pid}, rc={self.returncode})"
