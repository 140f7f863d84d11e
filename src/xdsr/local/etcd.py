"""A local etcd for `xdsr up`, the demo and the tests: Debian's etcd-server,
started on free loopback ports with its own data directory, stopped by its
process group; or a cluster of several such members (EtcdCluster)."""

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


class EtcdServer:
    """One single-member etcd cluster on loopback.

    The data directory survives stop()/start(), so a test can restart etcd
    and find its data again; close() removes it if this object created it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        name: str = "xdsr",
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """host: the address clients reach it on (`xdsr up --etcd-listen`);
        initial_cluster: "name=peer-url,..." of every member when it is one
        of several (EtcdCluster); tls: (cert, key, client CA): serve https and
        ask clients for a certificate that CA signed."""
        if not shutil.which("etcd"):
            raise FileNotFoundError(
                "etcd is not installed (Debian package etcd-server; scripts/install.sh installs it)"
            )
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="xdsr-etcd-"))
        self.port = port or free_port()
        self.peer_port = peer_port or free_port()
        self.name = name
        self.tls = tls
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = f"{scheme}://{shown}:{self.port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.log_path = self.data_dir.with_suffix(".log")
        self.proc: Child | None = None

    def spawn(self) -> EtcdServer:
        """Start the process, without waiting for it to be healthy (a
        cluster's members are healthy only once a quorum runs)."""
        client = self.endpoint
        cmd = [
            "etcd",
            "--name", self.name,
            "--data-dir", str(self.data_dir / "member-data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--log-level", "warn",
            "--logger", "zap",
            # Keep history bounded: watches older than this many revisions
            # get Compacted and re-list, as with any etcd.
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "100000",
        ]  # fmt: skip
        if self.tls is not None:
            cert, key, ca = self.tls
            cmd += ["--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file", str(ca)]
            cmd += ["--client-cert-auth"]
        # Known to stop() before it starts: whatever interrupts the start
        # (a signal that raises, a timeout) finds it.
        self.proc = Child(f"etcd {self.name}", cmd, log_path=self.log_path)
        self.proc.start()
        return self

    def wait_healthy(self, timeout: float = 15.0) -> EtcdServer:
        assert self.proc is not None
        self.proc.wait_ready(self._healthy, timeout, what="healthy")
        return self

    def start(self, timeout: float = 15.0) -> EtcdServer:
        try:
            self.spawn()
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        # The process runs (Child.wait_ready checks) and the client port
        # answers; with TLS, /health needs a client certificate, so the
        # port is enough there.
        if self.tls is not None:
            host = self.endpoint.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
            with contextlib.suppress(OSError), socket.create_connection((host, self.port), timeout=1):
                return True
            return False
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


class EtcdCluster:
    """n etcd members on loopback, one cluster: for the store client's failover."""

    def __init__(self, n: int = 3) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="xdsr-etcd-cluster-"))
        peers = [(f"m{i}", free_port()) for i in range(n)]
        initial = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers)
        self.members = [
            EtcdServer(self.root / name, name=name, peer_port=port, initial_cluster=initial) for name, port in peers
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        try:
            for m in self.members:
                m.spawn()
            for m in self.members:
                m.wait_healthy(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for m in self.members:
            m.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
