"""A local etcd for `xdsr up`, the demo and the tests: Debian's etcd-server,
started on free loopback ports with its own data directory, stopped by its
process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import urllib.request
from pathlib import Path

from xdsr.local.process import Child, free_port


class EtcdError(RuntimeError):
    """etcd cannot start; the message says why and what to do."""


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class EtcdServer:
    """One single-member etcd cluster on loopback.

    The data directory survives stop()/start(), so a test can restart etcd
    and find its data again; close() removes it if this object created it.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, port: int | None = None) -> None:
        if not shutil.which("etcd"):
            raise FileNotFoundError(
                "etcd is not installed (Debian package etcd-server; scripts/install.sh installs it)"
            )
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="xdsr-etcd-"))
        self.port = port or free_port()
        self.peer_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir.with_suffix(".log")
        self.proc: Child | None = None

    def start(self, timeout: float = 15.0) -> EtcdServer:
        # Another etcd on the port would answer the health check for the one
        # that failed to start: refuse a busy port instead of using it.
        for what, port in (("client", self.port), ("peer", self.peer_port)):
            if not port_free(port):
                raise EtcdError(
                    f"cannot start etcd: its {what} port 127.0.0.1:{port} is in use (another etcd? "
                    "pass its URL with --store to use it, or choose another --etcd-port)"
                )
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            "etcd",
            "--name", "xdsr",
            "--data-dir", str(self.data_dir / "member-data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"xdsr={peer}",
            "--log-level", "warn",
            "--logger", "zap",
            # Keep history bounded: watches older than this many revisions
            # get Compacted and re-list, as with any etcd.
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "100000",
        ]  # fmt: skip
        self.proc = Child("etcd", cmd, log_path=self.log_path).start()
        try:
            self.proc.wait_ready(self._healthy, timeout, what="healthy")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def exited(self) -> int | None:
        """etcd's exit status once it died, None while it runs."""
        return self.proc.poll() if self.proc is not None else None

    def _healthy(self) -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
            return b'"true"' in r.read()
        return False

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

    def __enter__(self) -> EtcdServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
