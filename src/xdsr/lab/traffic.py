"""Start the lab's traffic tools in namespaces and read their results.

The tools themselves are xdsr.lab.echo (the backend server) and
xdsr.lab.client (TCP connections / UDP flows); both speak JSON lines on
stdout. Here they run as LabProcesses, so the lab kills them at teardown
whatever happens to the test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xdsr

from .commands import LabError
from .netns import Lab
from .process import LabProcess

# The tools must import from this very source tree, whatever the caller's
# working directory or installation.
_SRC_DIR = str(Path(xdsr.__file__).resolve().parents[1])


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_DIR, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tool_cmd(module: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


class EventStream:
    """Collects the JSON lines a tool prints, on a background thread.

    A thread (rather than non-blocking reads) keeps the pipe drained
    however long the caller waits, so the tool never blocks on a full pipe.
    """

    def __init__(self, proc: LabProcess) -> None:
        if proc.stdout is None:
            raise LabError("the process has no stdout pipe")
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.garbage: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._pump, name=f"events-{proc.pid}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    with self._cond:
                        self.garbage.append(line)
                    continue
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass  # the pipe was closed under us at teardown
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == kind]

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        """The first event of `kind`; LabError if the tool exits or the
        deadline passes first (with its stderr, to say why)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if e.get("event") == kind:
                        return e
                    if e.get("event") == "error":
                        raise LabError(f"{self.proc.cmd[2]} in {self.proc.netns}: {e.get('error')}")
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
        why = "exited" if self._eof else f"gave no {kind!r} within {timeout}s"
        raise LabError(
            f"{' '.join(self.proc.cmd[2:])} in {self.proc.netns} {why}: {self.proc.stderr_text().strip()[-2000:]}"
        )

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


# -- the backend server ---------------------------------------------------


@dataclass
class EchoServer:
    """A running xdsr.lab.echo."""

    name: str
    netns: str
    tcp_port: int | None
    udp_port: int | None
    process: LabProcess
    events: EventStream
    lab: Lab

    def stop(self) -> dict[str, Any] | None:
        """Stop it; returns its final counters (connections, lines, datagrams)."""
        self.lab.stop(self.process)
        self.events.join(2.0)
        stopped = self.events.of("stopped")
        return stopped[-1] if stopped else None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def start_echo(
    lab: Lab,
    ns: str,
    name: str,
    *,
    tcp_port: int | None = 80,
    udp_port: int | None = 5001,
    wait: bool = True,
    timeout: float = 10.0,
) -> EchoServer:
    """Start an echo server in `ns` answering `name`; by default wait until
    it listens."""
    args = ["--name", name]
    if tcp_port is not None:
        args += ["--tcp-port", str(tcp_port)]
    if udp_port is not None:
        args += ["--udp-port", str(udp_port)]
    proc = lab.popen(ns, _tool_cmd("xdsr.lab.echo", args), env=_tool_env())
    server = EchoServer(name, ns, tcp_port, udp_port, proc, EventStream(proc), lab)
    if wait:
        server.events.wait_for("ready", timeout)
    return server


def start_echos(
    lab: Lab, specs: Sequence[tuple[str, str, int | None, int | None]], timeout: float = 15.0
) -> list[EchoServer]:
    """Start many echo servers, (netns, name, tcp_port, udp_port) each, in
    parallel, and wait until all listen."""
    servers = [start_echo(lab, ns, name, tcp_port=t, udp_port=u, wait=False) for ns, name, t, u in specs]
    deadline = time.monotonic() + timeout
    for s in servers:
        s.events.wait_for("ready", max(0.1, deadline - time.monotonic()))
    return servers


# -- client results ---------------------------------------------------------


@dataclass(frozen=True)
class ConnResult:
    """One TCP connection: the answers it got, in order, and how it ended."""

    id: int
    local_port: int | None
    replies: tuple[str, ...]
    sent: int
    error: str | None
    error_after: float | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def backends(self) -> tuple[str, ...]:
        """Distinct backends that answered, in order of first answer."""
        return tuple(dict.fromkeys(self.replies))

    @property
    def backend(self) -> str | None:
        """The backend that answered first."""
        return self.replies[0] if self.replies else None

    @property
    def switched(self) -> bool:
        """More than one backend answered on this one connection."""
        return len(self.backends) > 1


@dataclass(frozen=True)
class TcpResult:
    target: tuple[str, int]
    elapsed: float
    connections: tuple[ConnResult, ...]

    @property
    def broken(self) -> tuple[ConnResult, ...]:
        return tuple(c for c in self.connections if not c.ok)

    @property
    def switched(self) -> tuple[ConnResult, ...]:
        return tuple(c for c in self.connections if c.switched)

    @property
    def all_ok(self) -> bool:
        """Every connection answered, never broke and kept its backend."""
        return all(c.ok and c.replies and not c.switched for c in self.connections)

    def by_backend(self) -> Counter[str]:
        """Connections per (first) backend."""
        return Counter(c.backend for c in self.connections if c.backend is not None)

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> TcpResult:
        conns = tuple(
            ConnResult(
                id=c["id"],
                local_port=c.get("local_port"),
                replies=tuple(c.get("replies", [])),
                sent=c.get("sent", 0),
                error=c.get("error"),
                error_after=c.get("error_after"),
            )
            for c in ev["connections"]
        )
        return cls((ev["target"][0], ev["target"][1]), ev["elapsed"], conns)


@dataclass(frozen=True)
class FlowResult:
    """One UDP flow: one datagram, and the reply (None if none came)."""

    id: int
    local_port: int | None
    reply: str | None
    error: str | None
    rtt_ms: float | None


@dataclass(frozen=True)
class UdpResult:
    target: tuple[str, int]
    elapsed: float
    flows: tuple[FlowResult, ...]

    @property
    def answered(self) -> tuple[FlowResult, ...]:
        return tuple(f for f in self.flows if f.reply is not None)

    @property
    def unanswered(self) -> tuple[FlowResult, ...]:
        return tuple(f for f in self.flows if f.reply is None)

    def by_backend(self) -> Counter[str]:
        return Counter(f.reply for f in self.flows if f.reply is not None)

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> UdpResult:
        flows = tuple(
            FlowResult(f["id"], f.get("local_port"), f.get("reply"), f.get("error"), f.get("rtt_ms"))
            for f in ev["flows"]
        )
        return cls((ev["target"][0], ev["target"][1]), ev["elapsed"], flows)


# -- running the client ---------------------------------------------------------


class TcpSession:
    """A client whose TCP connections stay open until stop(): for fault tests.

    s = start_tcp_session(lab, ns, vip, 80, conns=50)   # connected
    ... withdraw an LBN, kill a backend ...
    s.broken_events()   # what broke so far, as it happened
    result = s.stop()   # TcpResult
    """

    def __init__(self, lab: Lab, proc: LabProcess) -> None:
        self.lab = lab
        self.process = proc
        self.events = EventStream(proc)
        self.ready: dict[str, Any] | None = None

    def wait_ready(self, timeout: float = 15.0) -> dict[str, Any]:
        self.ready = self.events.wait_for("ready", timeout)
        return self.ready

    def broken_events(self) -> list[dict[str, Any]]:
        return self.events.of("broken")

    def stop(self, timeout: float = 15.0) -> TcpResult:
        """Ask the client to finish (SIGTERM), and return its record."""
        self.process.signal(signal.SIGTERM)
        try:
            ev = self.events.wait_for("result", timeout)
        finally:
            self.lab.stop(self.process)
        return TcpResult.from_event(ev)


def _tcp_args(
    host: str, port: int, conns: int, interval_ms: float, reply_timeout: float, connect_timeout: float
) -> list[str]:
    return [
        "tcp", host, str(port), "--conns", str(conns), "--interval-ms", str(interval_ms),
        "--reply-timeout", str(reply_timeout), "--connect-timeout", str(connect_timeout),
    ]  # fmt: skip


def start_tcp_session(
    lab: Lab,
    ns: str,
    host: str,
    port: int,
    *,
    conns: int = 10,
    interval_ms: float = 100.0,
    reply_timeout: float = 2.0,
    connect_timeout: float = 3.0,
    ready_timeout: float = 15.0,
) -> TcpSession:
    """Open `conns` connections from `ns` and keep them talking until stop();
    returns once every connection is established (or failed)."""
    args = [*_tcp_args(host, port, conns, interval_ms, reply_timeout, connect_timeout), "--until-signalled"]
    session = TcpSession(lab, lab.popen(ns, _tool_cmd("xdsr.lab.client", args), env=_tool_env()))
    session.wait_ready(ready_timeout)
    return session


def run_tcp_client(
    lab: Lab,
    ns: str,
    host: str,
    port: int,
    *,
    conns: int = 10,
    interval_ms: float = 100.0,
    duration: float = 1.0,
    reply_timeout: float = 2.0,
    connect_timeout: float = 3.0,
) -> TcpResult:
    """Run the TCP client in `ns` for `duration` seconds and return its record."""
    args = [*_tcp_args(host, port, conns, interval_ms, reply_timeout, connect_timeout), "--duration", str(duration)]
    proc = lab.popen(ns, _tool_cmd("xdsr.lab.client", args), env=_tool_env())
    events = EventStream(proc)
    try:
        ev = events.wait_for("result", duration + connect_timeout + reply_timeout + 15.0)
    finally:
        lab.stop(proc)
    return TcpResult.from_event(ev)


def run_udp_client(
    lab: Lab,
    ns: str,
    host: str,
    port: int,
    *,
    flows: int = 100,
    reply_timeout: float = 2.0,
    concurrency: int = 256,
) -> UdpResult:
    """Send one datagram on each of `flows` flows from `ns`; return the replies."""
    args = [
        "udp", host, str(port), "--flows", str(flows), "--reply-timeout", str(reply_timeout),
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    proc = lab.popen(ns, _tool_cmd("xdsr.lab.client", args), env=_tool_env())
    events = EventStream(proc)
    try:
        rounds = (flows + concurrency - 1) // max(concurrency, 1)
        ev = events.wait_for("result", rounds * reply_timeout + 15.0)
    finally:
        lab.stop(proc)
    return UdpResult.from_event(ev)
