"""The lab: network namespaces, veths, a bridge, addresses, routes,
sysctls, the lab's small BPF programs and processes run inside namespaces,
as one unit -- all torn down again, in reverse order, when the lab closes.

How it touches the system:
  * netlink through pyroute2 for links, addresses, routes and neighbours
    (one socket per namespace, opened once and closed before the namespace
    is deleted: an open socket would keep a deleted namespace, and its
    veths, alive), on a thread of the lab's own (netlink.py);
  * iproute2 / ethtool / sysctl as commands where pyroute2 is awkward:
    bridge FDB batches, offloads, sysctls (commands.py), and tc for the
    access ports' programs;
  * XDP attachment and the programs' counters through the project's libbpf
    binding and the data plane's loader (programs.py).

Nothing is pinned to bpffs by the lab itself. `Lab.bpffs_dir()` hands out a
per-lab directory for callers that do pin, and removes it on close. bpffs
work must stay in this (host) mount namespace: `ip netns exec` and `ip -n`
remount /sys, which hides /sys/fs/bpf from what they run.

A lab records itself in /run/xdsr-lab/<name>.json so that `cleanup_stale()`
(registry.py) can remove what a killed process (SIGKILL, a crashed CI job)
left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

from . import programs
from .commands import LabCommandError, LabError, require_root, run_cmd
from .netlink import NetlinkThread
from .network import Iface, NetworkConfig, Veth
from .process import LabProcess
from .programs import UNTAGGED, CensusKey
from .registry import (
    BPFFS,
    NETNS_RUN_DIR,
    REGISTRY_DIR,
    cleanup_stale,
    delete_netns,
    kill_netns_pids,
    lab_namespaces,
    netns_exists,
    proc_start_time,
    rmtree_bpffs,
    write_record,
)
from .wait import wait_until

# Re-exported: the names xdsr.lab.netns always had.
__all__ = [
    "BPFFS",
    "NETNS_RUN_DIR",
    "REGISTRY_DIR",
    "UNTAGGED",
    "CensusKey",
    "Iface",
    "Lab",
    "LabCommandError",
    "LabError",
    "LabProcess",
    "Veth",
    "cleanup_stale",
    "lab_namespaces",
    "require_root",
    "wait_until",
]

if TYPE_CHECKING:  # pyroute2 costs ~130 ms to import; the traffic tools never need it
    from pyroute2 import IPRoute

log = logging.getLogger("xdsr.lab")

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

T = TypeVar("T")


class Lab(NetworkConfig):
    """A set of network namespaces and everything in them, as one unit.

    Namespaces are named `<prefix>-<6 hex>-<role>`, so parallel runs never
    collide and `ip netns list` shows which lab owns what. Everything the lab
    creates is undone in reverse order by `close()` (also on `with` exit,
    when the body raises, at interpreter exit, and on SIGINT/SIGTERM after
    `install_signal_handlers()`); `close()` may be called any number of
    times. Links, addresses, routes and tc/XDP programs inside a namespace go
    away with it, so the undo log only holds what outlives a namespace:
    processes, netlink sockets, the namespaces, the bpffs directory.

    Not thread-safe for concurrent construction; processes may be started
    and stopped from any thread.
    """

    def __init__(self, prefix: str = "xl", *, register: bool = True) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"lab prefix {prefix!r}: lower-case letters, digits and '-', at most 16")
        while True:
            name = f"{prefix}-{secrets.token_hex(3)}"
            if not any(p.name.startswith(name + "-") for p in NETNS_RUN_DIR.glob(name + "-*")):
                break
        self.name = name
        self._owner_pid = os.getpid()
        self._namespaces: list[str] = []
        self._ipr: dict[str, IPRoute] = {}
        self._procs: list[LabProcess] = []
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.RLock()
        self._closing = False
        self._closed = False
        self._bpffs: Path | None = None
        self._prev_handlers: dict[int, Any] = {}
        self._registry = REGISTRY_DIR / f"{name}.json" if register else None
        self._nl = NetlinkThread(f"{name}-netlink")
        # Registered first, so it runs last: the sockets close on this thread.
        self._push_undo("stop the netlink thread", self._nl.stop)
        atexit.register(self.close)

    # -- lifecycle -----------------------------------------------------

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        # Never let a teardown problem hide the exception that ended the body.
        try:
            self.close()
        except Exception:
            log.exception("lab %s: teardown after an error failed", self.name)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self._namespaces)

    def close(self) -> None:
        """Tear everything down, in reverse order of creation.

        Every step runs even when an earlier one fails; afterwards LabError
        lists what failed. Safe to call twice, from a signal handler, and
        from atexit; a forked child never tears down its parent's lab.
        """
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
        errors: list[str] = []
        try:
            self._stop_processes(errors)
            # Whatever still runs in a lab namespace (started by `run` and
            # timed out, daemonised children) dies before its namespace.
            with contextlib.suppress(Exception):
                killed = kill_netns_pids(self._namespaces)
                if killed:
                    log.debug("lab %s: killed stray pids %s", self.name, killed)
            while self._undo:
                what, fn = self._undo.pop()
                try:
                    fn()
                except Exception as exc:
                    errors.append(f"{what}: {exc}")
            left = [ns for ns in self._namespaces if netns_exists(ns)]
            if left:
                errors.append(f"namespaces still present: {left}")
            if self._registry is not None and not left:
                with contextlib.suppress(FileNotFoundError):
                    self._registry.unlink()
        finally:
            self._closed = True
            self._closing = False
            self._restore_signal_handlers()
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)
        if errors:
            raise LabError(f"lab {self.name}: teardown problems: " + "; ".join(errors))

    def _stop_processes(self, errors: list[str]) -> None:
        with self._lock:
            procs = list(self._procs)
            self._procs.clear()
        # One grace period for all of them, then SIGKILL for all of them:
        # teardown time does not grow with the number of processes.
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        for p in procs:
            p.signal(signal.SIGKILL)  # also for exited leaders: their group may live on
        for p in procs:
            try:
                p.wait(2.0)
            except subprocess.TimeoutExpired:
                errors.append(f"process {p.pid} ({p.cmd[0]}) survived SIGKILL")
            finally:
                p.close()

    def install_signal_handlers(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Tear the lab down on SIGINT/SIGTERM, then behave as the signal would.

        For long-running users (the demo): the handler closes the lab and
        raises KeyboardInterrupt (SIGINT) or SystemExit(128+n), so the
        program still unwinds normally. A signal arriving while the lab is
        already closing is ignored so the teardown finishes. Call from the
        main thread; the previous handlers come back at close.
        """

        def handler(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != self._owner_pid:
                # A forked child (pyroute2 forks to enter namespaces) must
                # die of the signal as it would have without us: raising
                # there would unwind the child into a copy of our code.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            if self._closing:
                return
            try:
                self.close()
            except LabError:
                log.exception("lab %s: teardown on signal %d", self.name, signum)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

        for s in signums:
            self._prev_handlers.setdefault(s, signal.getsignal(s))
            signal.signal(s, handler)

    def _restore_signal_handlers(self) -> None:
        if not self._prev_handlers or threading.current_thread() is not threading.main_thread():
            return
        for s, prev in self._prev_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(s, prev)
        self._prev_handlers.clear()

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise LabError(f"lab {self.name} is closed")

    def _push_undo(self, what: str, fn: Callable[[], None]) -> None:
        with self._lock:
            self._undo.append((what, fn))

    def _write_registry(self) -> None:
        if self._registry is None:
            return
        record = {
            "lab": self.name,
            "pid": self._owner_pid,
            "start_time": proc_start_time(self._owner_pid),
            "namespaces": self._namespaces,
            "bpffs": str(self._bpffs) if self._bpffs else None,
        }
        write_record(self._registry, record)

    # -- namespaces ----------------------------------------------------

    def netns_name(self, role: str) -> str:
        return f"{self.name}-{role}"

    def add_netns(self, role: str, *, ipv6: bool = True, sysctls: Mapping[str, object] | None = None) -> str:
        """Create the namespace `<lab>-<role>` with `lo` up; return its name.

        `sysctls` are applied before any interface exists, so `.default.`
        values reach every interface created later. With `ipv6` False the
        namespace has IPv6 disabled (no router solicitations, MLD or DAD
        traffic to blur counters); otherwise DAD is off so addresses work at
        once.
        """
        from pyroute2 import IPRoute, netns

        self._check_open()
        if not _ROLE_RE.match(role):
            raise ValueError(f"namespace role {role!r}: lower-case letters, digits and '-'")
        name = self.netns_name(role)
        if name in self._namespaces or netns_exists(name):
            raise LabError(f"namespace {name} exists already")
        netns.create(name)
        with self._lock:
            self._namespaces.append(name)
        self._push_undo(f"delete netns {name}", lambda: delete_netns(name))
        self._write_registry()
        self._ipr[name] = self._nl.call(lambda: IPRoute(netns=name, flags=0))
        self._push_undo(f"close netlink socket of {name}", lambda: self._close_ipr(name))
        self.set_up(name, "lo")
        values: dict[str, object] = {}
        if ipv6:
            values.update(
                {
                    "net.ipv6.conf.all.disable_ipv6": 0,
                    "net.ipv6.conf.default.disable_ipv6": 0,
                    "net.ipv6.conf.all.accept_dad": 0,
                    "net.ipv6.conf.default.accept_dad": 0,
                }
            )
        else:
            values.update({"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
        values.update(sysctls or {})
        self.sysctl(name, values)
        return name

    def _close_ipr(self, name: str) -> None:
        ipr = self._ipr.pop(name, None)
        if ipr is not None:
            self._nl.call(ipr.close)

    def netlink(self, ns: str, fn: Callable[[IPRoute], T]) -> T:
        """Run `fn` with the lab's pyroute2 IPRoute inside `ns`, on the lab's
        netlink thread (see _NetlinkThread), and return what it returns:

            lab.netlink(ns, lambda ipr: ipr.get_neighbours(dst="10.1.0.11"))
        """
        try:
            ipr = self._ipr[ns]
        except KeyError:
            raise LabError(f"{ns} is not a namespace of lab {self.name}") from None
        return self._nl.call(lambda: fn(ipr))

    # -- the lab's BPF programs (programs.py) ---------------------------

    def add_access_port(self, ns: str, ifname: str, vid: int) -> None:
        """Make `ifname` an 802.1Q access port of VLAN `vid`.

        The kernel has no VLAN devices, so bpf/lab/vlan_access.bpf.c does it
        in tc: push the tag on egress, accept only `vid` and pop on ingress.
        The VID is the minor of the filter's classid (hex in tc syntax).
        Calling it again moves the port to another VLAN (filters replaced
        in place, never a moment without one)."""
        programs.add_access_port(ns, ifname, vid)

    def access_port_counters(self, ns: str, ifname: str) -> dict[str, int]:
        """Verdict counters of an access port's two programs, by name."""
        return programs.access_port_counters(ns, ifname)

    def attach_xdp(self, ns: str, ifname: str, obj: str | Path = "xdp_pass", program: str | None = None) -> int:
        """Attach an XDP program in native (driver) mode; return its id.

        `obj` is a lab object name ("xdp_pass", "xdp_census") or a path.
        Native mode matters: veth only sets up the receive queues that
        accept a peer's XDP_TX frames for a native program."""
        return programs.attach_xdp(ns, self.link_index(ns, ifname), obj, program)

    def detach_xdp(self, ns: str, ifname: str) -> None:
        programs.detach_xdp(ns, self.link_index(ns, ifname))

    def xdp_prog_id(self, ns: str, ifname: str) -> int | None:
        """Id of the XDP program on an interface, None if there is none."""
        return programs.xdp_prog_id(ns, self.link_index(ns, ifname))

    def xdp_census(self, ns: str, ifname: str) -> dict[CensusKey, int]:
        """Frames seen so far by the xdp_census program on an interface."""
        prog_id = self.xdp_prog_id(ns, ifname)
        if prog_id is None:
            raise LabError(f"no XDP program on {ns}/{ifname}")
        return programs.xdp_census(prog_id)

    def bpffs_dir(self) -> Path:
        """/sys/fs/bpf/<lab name>/, created on first use, removed at close.

        For callers that pin maps or programs: parallel labs never share
        pins. Use it from this process (or host-mount-namespace commands
        like bpftool), never through `ip netns exec`, which hides bpffs."""
        if self._bpffs is None:
            self._check_open()
            path = BPFFS / self.name
            path.mkdir(mode=0o700)
            self._bpffs = path
            self._push_undo(f"remove {path}", lambda: rmtree_bpffs(path))
            self._write_registry()
        return self._bpffs

    # -- processes -----------------------------------------------------

    def _ns_cmd(self, ns: str, cmd: Sequence[str]) -> list[str]:
        if ns not in self._namespaces:
            raise LabError(f"{ns} is not a namespace of lab {self.name}")
        return ["ip", "netns", "exec", ns, *cmd]

    def run(
        self,
        ns: str,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside `ns` (via `ip netns exec`) and wait for it.

        Returns the CompletedProcess (text stdout/stderr); raises
        LabCommandError on a non-zero exit when `check`."""
        self._check_open()
        return run_cmd(self._ns_cmd(ns, cmd), check=check, timeout=timeout, input=input)

    def output(self, ns: str, cmd: Sequence[str], *, timeout: float | None = 30.0) -> str:
        """stdout of `cmd` run inside `ns`."""
        return self.run(ns, cmd, timeout=timeout).stdout

    def popen(
        self,
        ns: str,
        cmd: Sequence[str],
        *,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        env: Mapping[str, str] | None = None,
    ) -> LabProcess:
        """Start `cmd` inside `ns`; the lab stops it at close.

        stdout is a text pipe by default: read it (the traffic helpers do) or
        pass subprocess.DEVNULL for chatty programs."""
        self._check_open()
        full = self._ns_cmd(ns, cmd)
        err = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the process; LabProcess.close() closes it
        log.debug("popen %s", " ".join(full))
        proc = LabProcess(
            ns,
            cmd,
            full,
            err,
            stdout=stdout,
            stdin=stdin,
            text=True,
            bufsize=1,
            env=dict(env) if env is not None else None,
        ).start()
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: LabProcess, timeout: float = 3.0) -> int | None:
        """Stop a process started with popen() and forget it."""
        rc = proc.stop(grace=timeout)
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)
        proc.close()
        return rc
