"""Lifecycle of the data plane in the kernel: the pinned maps and the XDP
program on each interface.

Maps live in a bpffs directory (the pin dir). Whoever comes first creates
them; every later process (a restarted agent, the CLI) adopts them, so a
restart of the controlling process never interrupts forwarding. Each attach
loads a fresh copy of the program with that interface's constants (its MAC)
and the pinned maps, and swaps it in atomically if one was attached before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xdsr.dataplane import abi
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.flowhash import DEFAULT_HASH_SEED
from xdsr.dataplane.model import TunnelEndpoint
from xdsr.dataplane.netns import Link, in_netns, link
from xdsr.net.frames import mac_bytes
from xdsr.paths import bpf_object

log = logging.getLogger("xdsr.dataplane")

DEFAULT_PIN_DIR = "/sys/fs/bpf/xdsr"
PROG_NAME = "xdsr_lb"
MAP_SERVICES = "xdsr_index0"  # the first of the two service indexes
MAP_INDEXES = ("xdsr_index0", "xdsr_index1")
MAP_SEL = "xdsr_sel"  # which index is live
MAP_BARRIER = "xdsr_barrier"  # updating it waits for an RCU grace period
MAP_SLOTS = "xdsr_slots"
MAP_BACKENDS = "xdsr_backends"
MAP_SVC_STATS = "xdsr_svc_stats"
MAP_STATS = "xdsr_stats"
MAP_META = "xdsr_meta"
ALL_MAPS = (*MAP_INDEXES, MAP_SEL, MAP_BARRIER, MAP_SLOTS, MAP_BACKENDS, MAP_SVC_STATS, MAP_STATS, MAP_META)


@dataclass(frozen=True)
class Limits:
    """How big the data plane is, fixed when its maps are created.

    The slot and backend arrays are preallocated: a table takes 1 byte per
    slot (up to 255 backends) or 2, rounded up to 64-byte chunks, and needs
    room for its new copy while the old one still serves; a backend takes 16
    bytes. See docs/dataplane.md.
    """

    max_services: int = 4096
    table_memory: int = 32 << 20  # bytes of Maglev slots
    max_backends: int = 262144  # backend entries, all services together

    def __post_init__(self) -> None:
        if not 1 <= self.max_services <= 1 << 20:
            raise DataplaneError(f"max_services {self.max_services} is outside 1..{1 << 20}")
        if self.table_memory < abi.CHUNK_SIZE or self.table_memory > 1 << 34:
            raise DataplaneError(f"table_memory {self.table_memory} is outside 64 bytes..16 GiB")
        if not 1 <= self.max_backends <= 1 << 28:
            raise DataplaneError(f"max_backends {self.max_backends} is outside 1..{1 << 28}")

    @property
    def index_size(self) -> int:
        """Four buckets per service: with its fragment entry, at most half full.
        There are two indexes of this size: the live one and the next."""
        return 1 << max(4, (4 * self.max_services - 1).bit_length())

    @property
    def slot_chunks(self) -> int:
        return self.table_memory // abi.CHUNK_SIZE


DEFAULT_LIMITS = Limits()

MODES = {"native": bpf.XDP_FLAGS_DRV_MODE, "generic": bpf.XDP_FLAGS_SKB_MODE}

# The program is not multi-buffer capable (no xdp.frags): in native mode a
# frame must fit one 4 KiB page after XDP's 256 bytes of headroom and the
# kernel's 320 bytes of shared info, 3520 bytes, which is an 802.1Q-tagged
# frame of this MTU. Drivers with smaller buffers refuse less themselves.
MAX_NATIVE_MTU = 3502


class DataplaneError(RuntimeError):
    """An operation on the data plane failed; the message says what to do."""


def _mount_of(path: Path) -> tuple[str, str]:
    """(mount point, fs type) of the mount holding path."""
    best = ("/", "")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mnt = fields[4]
            fstype = fields[fields.index("-") + 1]
            if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, fstype)
    return best


def ensure_bpffs(pin_dir: Path) -> None:
    """Make sure pin_dir is on bpffs, mounting /sys/fs/bpf if nobody has."""
    _, fstype = _mount_of(pin_dir)
    if fstype == "bpf":
        return
    if str(pin_dir).startswith("/sys/fs/bpf/") and _mount_of(Path("/sys/fs/bpf"))[1] != "bpf":
        log.info("mounting bpffs on /sys/fs/bpf")
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True, capture_output=True)
        return
    raise DataplaneError(f"{pin_dir} is not on a BPF filesystem; mount one (mount -t bpf bpf /sys/fs/bpf)")


@dataclass(frozen=True)
class Attachment:
    ifname: str
    netns: str | None
    prog_id: int
    mode: str
    live: bool  # the interface really runs this program


def check_attachable(ifname: str, netns: str | None = None, mode: str = "native") -> Link:
    """The interface, if the program can run on it in this mode; raises
    DataplaneError (or LookupError) before anything is loaded or pinned."""
    if mode not in MODES:
        raise DataplaneError(f"unknown XDP mode {mode!r} (native or generic)")
    lk = link(ifname, netns)
    if mode == "native" and lk.mtu > MAX_NATIVE_MTU:
        raise DataplaneError(
            f"{ifname} has MTU {lk.mtu}, above {MAX_NATIVE_MTU}, the largest the xdsr program handles in native "
            f"mode (it takes each frame in one buffer: no jumbo frames); set the trunk's MTU to {MAX_NATIVE_MTU} "
            "or less"
        )
    return lk


class Dataplane:
    """Handle on one LBN's pinned data plane."""

    def __init__(self, pin_dir: str | os.PathLike[str], maps: dict[str, bpf.Map], meta: abi.Meta) -> None:
        self.pin_dir = Path(pin_dir)
        self.maps = maps
        self.max_services = int(meta.max_services)
        self.index_size = int(meta.index_size)
        self.slot_chunks = int(meta.slot_chunks)
        self.backend_slots = int(meta.backend_slots)
        self._slots: mmap.mmap | None = None
        self._backends: mmap.mmap | None = None
        # Grace periods this process started after its flips (see state.py).
        self.flipped_seq: int | None = None
        self.barrier: threading.Thread | None = None
        self._barrier_inner: bpf.Map | None = None

    @property
    def limits(self) -> Limits:
        return Limits(self.max_services, self.slot_chunks * abi.CHUNK_SIZE, self.backend_slots)

    @property
    def slots(self) -> mmap.mmap:
        """The global slot array, mapped (tables are written through it)."""
        if self._slots is None:
            self._slots = self.maps[MAP_SLOTS].mmap()
        return self._slots

    @property
    def backends(self) -> mmap.mmap:
        if self._backends is None:
            self._backends = self.maps[MAP_BACKENDS].mmap()
        return self._backends

    # -- creation and adoption ------------------------------------------------

    @classmethod
    def exists(cls, pin_dir: str | os.PathLike[str] = DEFAULT_PIN_DIR) -> bool:
        return (Path(pin_dir) / MAP_META).exists()

    @classmethod
    def open(cls, pin_dir: str | os.PathLike[str] = DEFAULT_PIN_DIR) -> Dataplane:
        """Adopt the pinned maps; fail if there are none or they are of another ABI."""
        pin = Path(pin_dir)
        if not cls.exists(pin):
            raise DataplaneError(f"no xdsr data plane is pinned in {pin} (run `xdsr dp attach IFACE` first)")
        maps = {name: bpf.Map.from_pin(str(pin / name)) for name in ALL_MAPS}
        raw = maps[MAP_META].lookup(b"\0\0\0\0")
        meta = abi.Meta.from_buffer_copy(raw or bytes(ctypes.sizeof(abi.Meta)))
        if meta.abi_version != abi.ABI_VERSION:
            raise DataplaneError(
                f"the maps pinned in {pin} have ABI version {meta.abi_version}, this xdsr speaks "
                f"{abi.ABI_VERSION}: detach and purge them (xdsr dp purge) before upgrading across ABIs"
            )
        return cls(pin, maps, meta)

    @classmethod
    def create_or_open(
        cls,
        pin_dir: str | os.PathLike[str] = DEFAULT_PIN_DIR,
        max_services: int | None = None,
        limits: Limits | None = None,
    ) -> Dataplane:
        """Adopt the pinned maps, or create and pin them with these limits
        (max_services alone overrides the default limits' service count)."""
        if limits is None and max_services is not None:
            limits = Limits(max_services=max_services)
        pin = Path(pin_dir)
        if cls.exists(pin):
            dp = cls.open(pin)
            if limits is not None and limits != dp.limits:
                raise DataplaneError(
                    f"the maps pinned in {pin} were made for {dp.limits}, not {limits}: "
                    "resizing needs a purge (xdsr dp purge) and a new attach"
                )
            return dp
        ensure_bpffs(pin)
        pin.mkdir(parents=True, exist_ok=True)
        lim = limits or DEFAULT_LIMITS
        with _open_object(pin, lim) as obj:
            obj.set_autoload(PROG_NAME, False)
            obj.load()
            maps = {name: obj.map(name) for name in ALL_MAPS}
        meta = abi.Meta(
            abi_version=abi.ABI_VERSION,
            max_services=lim.max_services,
            index_size=lim.index_size,
            slot_chunks=lim.slot_chunks,
            backend_slots=lim.max_backends,
        )
        maps[MAP_META].update(b"\0\0\0\0", bytes(meta))
        log.info("created data plane maps in %s: %s", pin, lim)
        return cls(pin, maps, meta)

    def wait_grace_period(self) -> None:
        """Return once every XDP program that was running has finished: the
        kernel waits for an RCU grace period after an update of a map of maps
        from user space."""
        if self._barrier_inner is None:
            self._barrier_inner = bpf.Map.create(bpf.BPF_MAP_TYPE_ARRAY, "xdsr_barrier_i", 4, 4, 1)
        self.maps[MAP_BARRIER].update(b"\0\0\0\0", self._barrier_inner.fd.to_bytes(4, "little"))

    def close(self) -> None:
        if self.barrier is not None:
            self.barrier.join()
            self.barrier = None
        if self._barrier_inner is not None:
            self._barrier_inner.close()
            self._barrier_inner = None
        for mm in (self._slots, self._backends):
            if mm is not None:
                mm.close()
        self._slots = self._backends = None
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> Dataplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- programs ---------------------------------------------------------------

    def _prog_pin(self, ifname: str, netns: str | None) -> Path:
        return self.pin_dir / prog_pin_name(ifname, netns)

    def load_program(
        self,
        mac: str,
        ifindex: int = 0,
        hash_seed: int = DEFAULT_HASH_SEED,
        tunnel: TunnelEndpoint | None = None,
    ) -> bpf.Program:
        """A copy of the program bound to these maps and this interface MAC
        (and this node's tunnel endpoint, if any), not attached anywhere
        (attach() and BPF_PROG_TEST_RUN use it)."""
        cfg = abi.ProgCfg(ifindex=ifindex, hash_seed=hash_seed, index_mask=self.index_size - 1)
        ctypes.memmove(cfg.mac, mac_bytes(mac), 6)
        (tunnel or TunnelEndpoint()).fill(cfg)
        with _open_object(self.pin_dir, self.limits) as obj:
            obj.set_initial_value(".rodata", bytes(cfg))
            obj.load()
            return obj.program(PROG_NAME)

    def attach(
        self,
        ifname: str,
        netns: str | None = None,
        mode: str = "native",
        hash_seed: int = DEFAULT_HASH_SEED,
        force: bool = False,
        tunnel: TunnelEndpoint | None = None,
    ) -> Attachment:
        """Load the program for ifname and attach it; replaces a previous xdsr
        program atomically, refuses to replace anyone else's unless force."""
        lk = check_attachable(ifname, netns, mode)
        prog = self.load_program(lk.mac, lk.index, hash_seed, tunnel)
        pin = self._prog_pin(ifname, netns)

        def check(current: int) -> bpf.Program | None:
            # Our program is opened from its pin: opening it by id needs CAP_SYS_ADMIN,
            # which an agent in a container (CAP_BPF, CAP_NET_ADMIN) does not have.
            running = bpf.Program.from_pin(str(pin)) if pin.exists() else None
            if running is not None and running.id == current:
                return running
            if running is not None:
                running.close()
            if not force:
                raise DataplaneError(
                    f"{ifname} already runs XDP program id {current}, which is not this data plane's; "
                    "detach it or pass --force"
                )
            return None

        try:
            attach_xdp(lk.index, prog, netns=netns, mode=mode, check_current=check)
        except bpf.BpfError as exc:
            raise DataplaneError(f"cannot attach XDP ({mode}) to {ifname}: {exc}") from None
        with contextlib.suppress(FileNotFoundError):
            pin.unlink()
        prog.pin(str(pin))
        log.info("attached %s (id %d, %s) to %s%s", PROG_NAME, prog.id, mode, ifname, f" in {netns}" if netns else "")
        return Attachment(ifname, netns, prog.id, mode, True)

    def _runs_on_these_maps(self, prog_id: int, pin: Path) -> bool:
        """An xdsr program of this data plane: the attachment's pin, or (its
        pin gone, e.g. after a purge elsewhere) a program using these maps."""
        if pin.exists():
            with contextlib.closing(bpf.Program.from_pin(str(pin))) as p:
                if p.id == prog_id:
                    return True
        try:
            prog = bpf.Program.from_id(prog_id)
        except bpf.BpfError:
            return False
        with contextlib.closing(prog):
            return bool(set(prog.map_ids()) & {m.info.id for m in self.maps.values()})

    def detach(self, ifname: str, netns: str | None = None) -> list[str]:
        """Remove this data plane's program from ifname in whichever mode it
        runs (native, generic); returns the modes it was removed from, [] if
        none (detaching twice is no error). Anyone else's program stays."""
        pin = self._prog_pin(ifname, netns)
        lk = link(ifname, netns)
        removed = []
        with in_netns(netns):
            for name, flag in MODES.items():
                current = bpf.xdp_query_id(lk.index, flag)
                if not current:
                    continue
                if not self._runs_on_these_maps(current, pin):
                    raise DataplaneError(
                        f"{ifname} runs XDP program id {current} ({name}), which is not this data plane's"
                    )
                bpf.xdp_detach(lk.index, flag)
                removed.append(name)
        with contextlib.suppress(FileNotFoundError):
            pin.unlink()
        return removed

    def attachments(self) -> list[Attachment]:
        out = []
        for pin in sorted(self.pin_dir.glob("xdp@*")):
            _, ifname, *rest = pin.name.split("@")
            netns = rest[0] if rest else None
            prog = bpf.Program.from_pin(str(pin))
            live = False
            mode = "?"
            try:
                lk = link(ifname, netns)
                with in_netns(netns):
                    for name, flag in MODES.items():
                        if bpf.xdp_query_id(lk.index, flag) == prog.id:
                            live, mode = True, name
            except (LookupError, FileNotFoundError):
                pass
            out.append(Attachment(ifname, netns, prog.id, mode, live))
            prog.close()
        return out

    def purge(self) -> None:
        """Remove the pinned maps (after every program is detached)."""
        live = [a for a in self.attachments() if a.live]
        if live:
            names = ", ".join(a.ifname for a in live)
            raise DataplaneError(f"programs are still attached ({names}): detach them first")
        self.close()
        remove_pins(self.pin_dir)


def attach_xdp(
    ifindex: int,
    prog: bpf.Program,
    *,
    netns: str | None = None,
    mode: str = "native",
    check_current: Callable[[int], bpf.Program | None] | None = None,
) -> None:
    """Attach prog to an interface (inside netns), replacing the program
    attached there in one step: the kernel is told which program it
    replaces, so one attached meanwhile by someone else is never overwritten.
    check_current(id) may raise to keep the program that runs now, and may
    return that program, opened another way than by id (which needs CAP_SYS_ADMIN).

    The one way xdsr attaches XDP: the data plane, the lab's programs and the
    benchmark's all come through here."""
    if mode not in MODES:
        raise DataplaneError(f"unknown XDP mode {mode!r} (native or generic)")
    flags = MODES[mode]
    with in_netns(netns):
        current = bpf.xdp_query_id(ifindex, flags)
        old = check_current(current) if current and check_current is not None else None
        if current and old is None:
            old = bpf.Program.from_id(current)
        try:
            bpf.xdp_attach(ifindex, prog, flags, old_prog=old)
        finally:
            if old is not None:
                old.close()


def detach_xdp(ifindex: int, *, netns: str | None = None, mode: str | None = None) -> None:
    """Detach whatever XDP program runs on an interface (in mode, or any)."""
    with in_netns(netns):
        bpf.xdp_detach(ifindex, MODES[mode] if mode else 0)


def xdp_prog_id(ifindex: int, *, netns: str | None = None, mode: str | None = None) -> int:
    """Id of the XDP program on an interface (in mode, or any), 0 if none."""
    with in_netns(netns):
        return bpf.xdp_query_id(ifindex, MODES[mode] if mode else 0)


def prog_pin_name(ifname: str, netns: str | None) -> str:
    """Name of the pinned program of an attachment. bpffs refuses dots in
    names; '@' appears in neither interface nor namespace names."""
    return f"xdp@{ifname}@{netns}" if netns else f"xdp@{ifname}"


def remove_pins(pin_dir: str | os.PathLike[str]) -> None:
    """Unlink everything xdsr pinned in pin_dir, then the directory."""
    pin = Path(pin_dir)
    if not pin.exists():
        return
    for entry in pin.iterdir():
        entry.unlink()
    pin.rmdir()


@contextlib.contextmanager
def _open_object(pin: Path, limits: Limits):  # type: ignore[no-untyped-def]
    obj = bpf.BpfObject(str(bpf_object(PROG_NAME)))
    try:
        for name in ALL_MAPS:
            obj.set_pin_path(name, str(pin / name))
        for name in MAP_INDEXES:
            obj.set_max_entries(name, limits.index_size)
        obj.set_max_entries(MAP_SLOTS, limits.slot_chunks)
        obj.set_max_entries(MAP_BACKENDS, limits.max_backends)
        obj.set_max_entries(MAP_SVC_STATS, limits.max_services)
        yield obj
    finally:
        obj.close()
