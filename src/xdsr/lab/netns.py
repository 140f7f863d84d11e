"""Network-namespace lab primitives: namespaces, veths, a bridge, addresses,
routes, sysctls, the lab's small BPF programs, and processes run inside
namespaces -- all torn down again, in reverse order, when the lab closes.

Everything that touches the system lives in this module, so the choice of
tool is made in one place:
  * netlink through pyroute2 for links, addresses, routes and neighbours
    (one socket per namespace, opened once and closed before the namespace
    is deleted: an open socket would keep a deleted namespace, and its
    veths, alive);
  * iproute2 / ethtool / bpftool as commands where pyroute2 is awkward:
    tc BPF filters and XDP attachment (iproute2 loads the object with
    libbpf), bridge FDB batches, offloads, sysctls, and reading the
    counters of the lab's programs by their kernel ids.

Nothing is pinned to bpffs by the lab itself: the access-port VID travels in
the tc filter's classid (see bpf/lab/vlan_access.bpf.c). `Lab.bpffs_dir()`
hands out a per-lab directory for callers that do pin, and removes it on
close. bpffs work must stay in this (host) mount namespace: `ip netns exec`
and `ip -n` remount /sys, which hides /sys/fs/bpf from what they run.

A lab records itself in /run/xdsr-lab/<name>.json so that `cleanup_stale()`
can remove what a killed process (SIGKILL, a crashed CI job) left behind.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

from xdsr import paths
from xdsr.local.process import Child

if TYPE_CHECKING:  # pyroute2 costs ~130 ms to import; the traffic tools never need it
    from pyroute2 import IPRoute

log = logging.getLogger("xdsr.lab")

NETNS_RUN_DIR = Path("/run/netns")
REGISTRY_DIR = Path("/run/xdsr-lab")
BPFFS = Path("/sys/fs/bpf")

# Offloads every lab veth turns off by default (see add_veth).
DEFAULT_OFFLOADS_OFF = (
    "rxvlan",  # keep received tags in the frame...
    "txvlan",  # ...and write sent tags into it: XDP only sees the frame
    "rx-vlan-stag-hw-parse",
    "tx-vlan-stag-hw-insert",
    "tx",  # full checksums on locally generated packets: XDP forwards raw frames
)

# Names of the counters of bpf/lab/vlan_access.bpf.c, in the order of its enum.
ACCESS_COUNTERS = (
    "egress_tagged",
    "egress_drop",
    "ingress_pass",
    "ingress_other_vid",
    "ingress_untagged",
    "ingress_bad",
)

# In xdp_census keys, the VID of an untagged frame.
UNTAGGED = 0xFFFF

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
_ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab operation failed, or teardown left something behind."""


class LabCommandError(LabError):
    """A command run by the lab exited non-zero."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"`{' '.join(self.cmd)}` exited {returncode}: {detail}")


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


@dataclass(frozen=True)
class Iface:
    """One interface of the lab."""

    netns: str
    ifname: str
    mac: str
    ifindex: int


@dataclass(frozen=True)
class Veth:
    """Both ends of a veth pair."""

    a: Iface
    b: Iface


class CensusKey(NamedTuple):
    """A kind of frame counted by bpf/lab/xdp_census.bpf.c."""

    dst: str  # destination MAC
    vid: int  # outer 802.1Q VID as found in the frame, UNTAGGED if none
    proto: int  # EtherType after the tag (0x0800, 0x86dd, 0x0806...)


class LabProcess(Child):
    """A process started inside a namespace, tracked by its lab.

    It runs in a session of its own (its pid is its process group), so the
    lab can signal it and anything it forks; the namespace sweep at close
    catches whatever escaped the group. stderr goes to an anonymous
    temporary file: it can never fill a pipe and block the process, and is
    still there to explain a failure. `cmd` is the command as given, without
    the `ip netns exec` in front.
    """

    def __init__(
        self, netns: str, cmd: Sequence[str], argv: Sequence[str], stderr_file: IO[bytes], **popen: Any
    ) -> None:
        super().__init__(cmd[0] if cmd else "?", argv, stderr=stderr_file, **popen)
        self.netns = netns
        self.cmd = list(cmd)
        self._stderr_file = stderr_file

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        if self._stderr_file.closed:
            return ""
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode(errors="replace")

    def close(self) -> None:
        """Release the pipes and the stderr file (after stop())."""
        self.close_pipes()
        self._stderr_file.close()

    def __repr__(self) -> str:
        return f"LabProcess(pid={self.pid}, netns={self.netns!r}, cmd={self.cmd!r}, rc={self.returncode})"


def _ip_family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr.split("/")[0]).version == 6 else socket.AF_INET


def _proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot; None if there is no
    such process or it is a zombie (dead, not yet reaped).

    The pid alone could be reused by an unrelated process; pid plus start
    time identifies the owner of a lab."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may hold spaces):
    # [0] is field 3 (state), [19] is field 22 (starttime).
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _run_cmd(
    cmd: Sequence[str], *, check: bool = True, timeout: float | None = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    log.debug("run %s", " ".join(cmd))
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` did not finish within {timeout}s") from exc
    if check and res.returncode != 0:
        raise LabCommandError(cmd, res.returncode, res.stdout, res.stderr)
    return res


def _netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def _netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
    """Pids of every process whose network namespace is one of `names`."""
    inodes: dict[tuple[int, int], str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_RUN_DIR / name)
            inodes[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {}
    if not inodes:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        owner = inodes.get((st.st_dev, st.st_ino))
        if owner is not None:
            found.setdefault(owner, []).append(int(entry.name))
    return found


def _kill_netns_pids(names: Iterable[str]) -> list[int]:
    killed: list[int] = []
    for pids in _netns_pids(names).values():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _delete_netns(name: str) -> None:
    from pyroute2 import netns

    if _netns_exists(name):
        netns.remove(name)


def _rmtree_bpffs(path: Path) -> None:
    # bpffs supports unlink and rmdir but not every call shutil makes on
    # other file systems; walk it bottom-up by hand.
    if not path.exists():
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(root, f))
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(root, d))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


class _NetlinkThread:
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


class Lab:
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
        self._nl = _NetlinkThread(f"{name}-netlink")
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
                killed = _kill_netns_pids(self._namespaces)
                if killed:
                    log.debug("lab %s: killed stray pids %s", self.name, killed)
            while self._undo:
                what, fn = self._undo.pop()
                try:
                    fn()
                except Exception as exc:
                    errors.append(f"{what}: {exc}")
            left = [ns for ns in self._namespaces if _netns_exists(ns)]
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
            # Also for exited leaders: their process group may live on.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
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
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        record = {
            "lab": self.name,
            "pid": self._owner_pid,
            "start_time": _proc_start_time(self._owner_pid),
            "namespaces": self._namespaces,
            "bpffs": str(self._bpffs) if self._bpffs else None,
        }
        tmp = self._registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._registry)

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
        if name in self._namespaces or _netns_exists(name):
            raise LabError(f"namespace {name} exists already")
        netns.create(name)
        with self._lock:
            self._namespaces.append(name)
        self._push_undo(f"delete netns {name}", lambda: _delete_netns(name))
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

    def sysctl(self, ns: str, values: Mapping[str, object]) -> None:
        """Set sysctls inside `ns` (one process for all of them)."""
        if values:
            self.run(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def read_sysctl(self, ns: str, key: str) -> str:
        return self.run(ns, ["sysctl", "-n", key]).stdout.strip()

    # -- links ---------------------------------------------------------

    def link_index(self, ns: str, ifname: str) -> int:
        found = self.netlink(ns, lambda ipr: ipr.link_lookup(ifname=ifname))
        if not found:
            raise LabError(f"no interface {ifname} in {ns}")
        return int(found[0])

    def iface(self, ns: str, ifname: str) -> Iface:
        idx = self.link_index(ns, ifname)
        link = self.netlink(ns, lambda ipr: ipr.get_links(idx)[0])
        return Iface(ns, ifname, str(link.get("IFLA_ADDRESS")), idx)

    def set_up(self, ns: str, ifname: str) -> None:
        idx = self.link_index(ns, ifname)
        self.netlink(ns, lambda ipr: ipr.link("set", index=idx, state="up"))

    def add_veth(
        self,
        ns_a: str,
        name_a: str,
        ns_b: str,
        name_b: str,
        *,
        mac_a: str | None = None,
        mac_b: str | None = None,
        mtu: int | None = None,
        offloads_off: Sequence[str] | None = DEFAULT_OFFLOADS_OFF,
        up: bool = True,
    ) -> Veth:
        """A veth pair with end `name_a` in `ns_a` and `name_b` in `ns_b`.

        By default both ends get VLAN offloads and tx checksum offload off
        (DEFAULT_OFFLOADS_OFF): tags stay in the frame where XDP sees them,
        and locally generated packets carry full checksums because XDP
        forwards raw frames. Pass offloads_off=None to keep the defaults.
        """
        self._check_open()
        for ns in (ns_a, ns_b):
            if ns not in self._ipr:
                raise LabError(f"{ns} is not a namespace of lab {self.name}")
        peer: dict[str, Any] = {"ifname": name_b}
        if ns_b != ns_a:
            peer["net_ns_fd"] = ns_b
        if mac_b:
            peer["address"] = mac_b
        if mtu:
            peer["mtu"] = mtu
        kwargs: dict[str, Any] = {"ifname": name_a, "kind": "veth", "peer": peer}
        if mac_a:
            kwargs["address"] = mac_a
        if mtu:
            kwargs["mtu"] = mtu
        self.netlink(ns_a, lambda ipr: ipr.link("add", **kwargs))
        if offloads_off:
            self.set_offloads(ns_a, name_a, {f: False for f in offloads_off})
            self.set_offloads(ns_b, name_b, {f: False for f in offloads_off})
        if up:
            self.set_up(ns_a, name_a)
            self.set_up(ns_b, name_b)
        return Veth(self.iface(ns_a, name_a), self.iface(ns_b, name_b))

    def set_offloads(self, ns: str, ifname: str, features: Mapping[str, bool]) -> None:
        """`ethtool -K` inside `ns`."""
        args = [x for f, on in features.items() for x in (f, "on" if on else "off")]
        self.run(ns, ["ethtool", "-K", ifname, *args])

    def offloads(self, ns: str, ifname: str) -> dict[str, bool]:
        """Current `ethtool -k` features of an interface."""
        out = self.run(ns, ["ethtool", "-k", ifname]).stdout
        feats: dict[str, bool] = {}
        for line in out.splitlines()[1:]:
            key, _, rest = line.strip().partition(":")
            if rest:
                feats[key] = rest.split()[0] == "on"
        return feats

    def add_bridge(self, ns: str, name: str = "br0") -> Iface:
        """A VLAN-unaware bridge, up, forwarding at once.

        STP off (ports forward as soon as they are up) and multicast snooping
        off (IPv6 neighbour discovery is flooded, there is no querier)."""
        self._check_open()
        self.netlink(ns, lambda ipr: ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_mcast_snooping=0))
        self.set_up(ns, name)
        return self.iface(ns, name)

    def enslave(self, ns: str, ifname: str, bridge: str) -> None:
        idx, master = self.link_index(ns, ifname), self.link_index(ns, bridge)
        self.netlink(ns, lambda ipr: ipr.link("set", index=idx, master=master))

    def add_fdb_static(self, ns: str, entries: Iterable[tuple[str, str]]) -> None:
        """Static bridge FDB entries, (mac, port) pairs.

        Hosts that never transmit (an LBN before its program runs) would
        otherwise be reached by flooding; static entries make the fabric
        deterministic."""
        lines = [f"fdb replace {mac} dev {port} master static" for mac, port in entries]
        if lines:
            _run_cmd(["bridge", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    # -- addresses, routes, neighbours ----------------------------------

    def add_address(self, ns: str, ifname: str, cidr: str) -> None:
        """Add an address ("10.1.0.1/24", "fd00:1::1/64") to an interface."""
        iface = ipaddress.ip_interface(cidr)
        idx = self.link_index(ns, ifname)
        self.netlink(
            ns,
            lambda ipr: ipr.addr(
                "add",
                index=idx,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                family=_ip_family(str(iface.ip)),
            ),
        )

    def set_route(self, ns: str, dst: str, *, via: str | None = None, dev: str | None = None) -> None:
        """Add or replace a route; `dst` may be "default" (family from `via`)."""
        if dst == "default":
            if via is None:
                raise ValueError("a default route needs `via`")
            family = _ip_family(via)
            dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
        else:
            family = _ip_family(dst)
        kwargs: dict[str, Any] = {"family": family, "dst": dst}
        if via:
            kwargs["gateway"] = via
        if dev:
            kwargs["oif"] = self.link_index(ns, dev)
        self.netlink(ns, lambda ipr: ipr.route("replace", **kwargs))

    def set_multipath_route(self, ns: str, dst: str, nexthops: Sequence[tuple[str, str]]) -> None:
        """Point `dst` at the (gateway, dev) nexthops, replacing any route.

        One nexthop makes a plain route, several an ECMP route (how flows are
        spread follows the namespace's fib_multipath_hash_policy), none an
        `unreachable` route so senders get an ICMP error at once."""
        kwargs: dict[str, Any] = {"dst": dst, "family": _ip_family(dst)}
        if not nexthops:
            kwargs["type"] = "unreachable"
        elif len(nexthops) == 1:
            kwargs["gateway"], kwargs["oif"] = nexthops[0][0], self.link_index(ns, nexthops[0][1])
        else:
            kwargs["multipath"] = [{"gateway": gw, "oif": self.link_index(ns, dev)} for gw, dev in nexthops]
        self.netlink(ns, lambda ipr: ipr.route("replace", **kwargs))

    def route_nexthops(self, ns: str, dst: str) -> list[str]:
        """Gateways of the main-table route to exactly `dst` ([] if there is
        none or it is unreachable)."""
        net = ipaddress.ip_network(dst)
        gws: list[str] = []
        # A dump filtered here: given a dst, pyroute2 does a route *lookup*,
        # which resolves a multipath route to the one nexthop it would use.
        for r in self.netlink(ns, lambda ipr: list(ipr.get_routes(family=_ip_family(dst), table=254))):
            rdst = r.get("RTA_DST") or ("0.0.0.0" if net.version == 4 else "::")
            if r["dst_len"] != net.prefixlen or ipaddress.ip_address(rdst) != net.network_address:
                continue
            if r.get("RTA_GATEWAY"):
                gws.append(r.get("RTA_GATEWAY"))
            for hop in r.get("RTA_MULTIPATH") or []:
                if hop.get("RTA_GATEWAY"):
                    gws.append(hop.get("RTA_GATEWAY"))
        return gws

    def add_neighbour(self, ns: str, ifname: str, ip: str, mac: str) -> None:
        """A permanent neighbour entry (never resolved, never expires)."""
        from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

        idx = self.link_index(ns, ifname)
        self.netlink(
            ns,
            lambda ipr: ipr.neigh(
                "replace", dst=ip, lladdr=mac, ifindex=idx, state=NUD_PERMANENT, family=_ip_family(ip)
            ),
        )

    # -- the lab's BPF programs -----------------------------------------

    def add_access_port(self, ns: str, ifname: str, vid: int) -> None:
        """Make `ifname` an 802.1Q access port of VLAN `vid`.

        The kernel has no VLAN devices, so bpf/lab/vlan_access.bpf.c does it
        in tc: push the tag on egress, accept only `vid` and pop on ingress.
        The VID is the minor of the filter's classid (hex in tc syntax).
        Calling it again moves the port to another VLAN (filters replaced
        in place, never a moment without one)."""
        if not 1 <= vid <= 4094:
            raise ValueError(f"VID {vid} out of range 1..4094")
        obj = paths.bpf_object("vlan_access")
        batch = "\n".join(
            [f"qdisc replace dev {ifname} clsact"]
            + [
                f"filter replace dev {ifname} {hook} pref 1 handle 1 bpf da obj {obj} sec tc/{hook} classid 1:{vid:x}"
                for hook in ("egress", "ingress")
            ]
        )
        _run_cmd(["tc", "-n", ns, "-batch", "-"], input=batch + "\n")

    def access_port_counters(self, ns: str, ifname: str) -> dict[str, int]:
        """Verdict counters of an access port's two programs, by name."""
        totals = dict.fromkeys(ACCESS_COUNTERS, 0)
        for direction in ("egress", "ingress"):
            out = _run_cmd(["tc", "-n", ns, "-j", "filter", "show", "dev", ifname, direction]).stdout
            for flt in json.loads(out or "[]"):
                prog_id = flt.get("options", {}).get("prog", {}).get("id")
                if prog_id is None:
                    continue
                for map_id in _prog_map_ids(prog_id):
                    for key, value in _dump_percpu_map(map_id).items():
                        idx = int.from_bytes(key, "little")
                        if idx < len(ACCESS_COUNTERS):
                            totals[ACCESS_COUNTERS[idx]] += value
        return totals

    def attach_xdp(self, ns: str, ifname: str, obj: str | Path = "xdp_pass", section: str = "xdp") -> int:
        """Attach an XDP program in native (driver) mode; return its id.

        `obj` is a lab object name ("xdp_pass", "xdp_census") or a path.
        Native mode matters: veth only sets up the receive queues that
        accept a peer's XDP_TX frames for a native program."""
        path = Path(obj) if isinstance(obj, Path) or "/" in str(obj) else paths.bpf_object(str(obj))
        _run_cmd(["ip", "-n", ns, "link", "set", "dev", ifname, "xdpdrv", "obj", str(path), "sec", section])
        prog_id = self.xdp_prog_id(ns, ifname)
        if prog_id is None:
            raise LabError(f"XDP program from {path} did not attach to {ns}/{ifname}")
        return prog_id

    def detach_xdp(self, ns: str, ifname: str) -> None:
        _run_cmd(["ip", "-n", ns, "link", "set", "dev", ifname, "xdpdrv", "off"])

    def xdp_prog_id(self, ns: str, ifname: str) -> int | None:
        """Id of the XDP program on an interface, None if there is none."""
        idx = self.link_index(ns, ifname)
        link = self.netlink(ns, lambda ipr: ipr.get_links(idx)[0])
        xdp = link.get("IFLA_XDP")
        if xdp is None:
            return None
        prog_id = xdp.get("IFLA_XDP_PROG_ID")
        return int(prog_id) if prog_id else None

    def xdp_census(self, ns: str, ifname: str) -> dict[CensusKey, int]:
        """Frames seen so far by the xdp_census program on an interface."""
        prog_id = self.xdp_prog_id(ns, ifname)
        if prog_id is None:
            raise LabError(f"no XDP program on {ns}/{ifname}")
        counts: dict[CensusKey, int] = {}
        for map_id in _prog_map_ids(prog_id):
            for key, value in _dump_percpu_map(map_id).items():
                if len(key) < 10:
                    continue
                dst = ":".join(f"{b:02x}" for b in key[:6])
                ck = CensusKey(dst, int.from_bytes(key[6:8], "little"), int.from_bytes(key[8:10], "big"))
                counts[ck] = counts.get(ck, 0) + value
        return counts

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
            self._push_undo(f"remove {path}", lambda: _rmtree_bpffs(path))
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
        return _run_cmd(self._ns_cmd(ns, cmd), check=check, timeout=timeout, input=input)

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


def _prog_map_ids(prog_id: int) -> list[int]:
    out = _run_cmd(["bpftool", "-j", "prog", "show", "id", str(prog_id)]).stdout
    return [int(m) for m in json.loads(out).get("map_ids", [])]


def _parse_bytes(values: Sequence[str] | str) -> bytes:
    if isinstance(values, str):
        return bytes.fromhex(values.replace("0x", "").replace(" ", ""))
    return bytes(int(v, 16) for v in values)


def _dump_percpu_map(map_id: int) -> dict[bytes, int]:
    """key -> sum over CPUs of a per-CPU map with u64 values (bpftool JSON)."""
    out = _run_cmd(["bpftool", "-j", "map", "dump", "id", str(map_id)]).stdout
    result: dict[bytes, int] = {}
    for entry in json.loads(out or "[]"):
        if "key" not in entry:
            continue  # a "formatted"-only entry would need BTF-aware parsing
        key = _parse_bytes(entry["key"])
        total = 0
        for per_cpu in entry.get("values", []):
            total += int.from_bytes(_parse_bytes(per_cpu["value"]), "little")
        if "value" in entry:  # not per-CPU after all
            total += int.from_bytes(_parse_bytes(entry["value"]), "little")
        result[key] = total
    return result


def lab_namespaces(prefix: str | None = None) -> list[str]:
    """Namespaces in /run/netns that belong to labs (registered ones), or
    whose name starts with `prefix-`."""
    names = sorted(p.name for p in NETNS_RUN_DIR.glob("*")) if NETNS_RUN_DIR.exists() else []
    if prefix is not None:
        return [n for n in names if n.startswith(prefix + "-")]
    owned: set[str] = set()
    for rec in _registry_records():
        owned.update(rec.get("namespaces", []))
    return [n for n in names if n in owned]


def _registry_records() -> list[dict[str, Any]]:
    records = []
    for path in sorted(REGISTRY_DIR.glob("*.json")) if REGISTRY_DIR.exists() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records


def cleanup_stale(*, dry_run: bool = False) -> list[str]:
    """Remove the namespaces (and bpffs directories) of labs whose owning
    process no longer exists -- what a SIGKILLed test run or demo left.
    Returns the namespaces removed (or that would be, with `dry_run`)."""
    removed: list[str] = []
    for rec in _registry_records():
        pid, start = rec.get("pid"), rec.get("start_time")
        if isinstance(pid, int) and start is not None and _proc_start_time(pid) == start:
            continue  # the owner is alive: not stale
        names = [n for n in rec.get("namespaces", []) if _netns_exists(n)]
        removed.extend(names)
        if dry_run:
            continue
        _kill_netns_pids(names)
        for n in reversed(names):
            with contextlib.suppress(Exception):
                _delete_netns(n)
        if rec.get("bpffs"):
            _rmtree_bpffs(Path(rec["bpffs"]))
        with contextlib.suppress(FileNotFoundError):
            Path(rec["_path"]).unlink()
    return removed


def require_root() -> None:
    """Raise LabError unless running as root with the tools the lab needs."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, BPF)")
    missing = [t for t in ("ip", "tc", "bridge", "ethtool", "bpftool", "sysctl") if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs these commands: {', '.join(missing)}")
