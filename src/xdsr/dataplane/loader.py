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
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from xdsr.dataplane import abi
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.flowhash import DEFAULT_HASH_SEED
from xdsr.dataplane.model import mac_bytes
from xdsr.dataplane.netns import in_netns, link
from xdsr.paths import bpf_object

log = logging.getLogger("xdsr.dataplane")

DEFAULT_PIN_DIR = "/sys/fs/bpf/xdsr"
DEFAULT_MAX_SERVICES = 4096
PROG_NAME = "xdsr_lb"
MAP_SERVICES = "xdsr_services"
MAP_SVC_STATS = "xdsr_svc_stats"
MAP_STATS = "xdsr_stats"
MAP_META = "xdsr_meta"
ALL_MAPS = (MAP_SERVICES, MAP_SVC_STATS, MAP_STATS, MAP_META)

MODES = {"native": bpf.XDP_FLAGS_DRV_MODE, "generic": bpf.XDP_FLAGS_SKB_MODE}


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


class Dataplane:
    """Handle on one LBN's pinned data plane."""

    def __init__(self, pin_dir: str | os.PathLike[str], maps: dict[str, bpf.Map], meta: abi.Meta) -> None:
        self.pin_dir = Path(pin_dir)
        self.maps = maps
        self.max_services = int(meta.max_services)

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
        cls, pin_dir: str | os.PathLike[str] = DEFAULT_PIN_DIR, max_services: int | None = None
    ) -> Dataplane:
        """Adopt the pinned maps, or create and pin them sized for max_services."""
        pin = Path(pin_dir)
        if cls.exists(pin):
            dp = cls.open(pin)
            if max_services is not None and max_services != dp.max_services:
                raise DataplaneError(
                    f"the maps pinned in {pin} hold {dp.max_services} services, not {max_services}: "
                    "resizing needs a purge (xdsr dp purge) and a new attach"
                )
            return dp
        ensure_bpffs(pin)
        pin.mkdir(parents=True, exist_ok=True)
        n = max_services or DEFAULT_MAX_SERVICES
        with _open_object(pin, n) as obj:
            obj.set_autoload(PROG_NAME, False)
            obj.load()
            maps = {name: obj.map(name) for name in ALL_MAPS}
        meta = abi.Meta(abi_version=abi.ABI_VERSION, max_services=n)
        maps[MAP_META].update(b"\0\0\0\0", bytes(meta))
        log.info("created data plane maps in %s for %d services", pin, n)
        return cls(pin, maps, meta)

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> Dataplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- programs ---------------------------------------------------------------

    def _prog_pin(self, ifname: str, netns: str | None) -> Path:
        return self.pin_dir / prog_pin_name(ifname, netns)

    def load_program(self, mac: str, ifindex: int = 0, hash_seed: int = DEFAULT_HASH_SEED) -> bpf.Program:
        """A copy of the program bound to these maps and this interface MAC,
        not attached anywhere (attach() and BPF_PROG_TEST_RUN use it)."""
        cfg = abi.ProgCfg(ifindex=ifindex, hash_seed=hash_seed)
        ctypes.memmove(cfg.mac, mac_bytes(mac), 6)
        with _open_object(self.pin_dir, self.max_services) as obj:
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
    ) -> Attachment:
        """Load the program for ifname and attach it; replaces a previous xdsr
        program atomically, refuses to replace anyone else's unless force."""
        if mode not in MODES:
            raise DataplaneError(f"unknown XDP mode {mode!r} (native or generic)")
        lk = link(ifname, netns)
        prog = self.load_program(lk.mac, lk.index, hash_seed)
        pin = self._prog_pin(ifname, netns)
        flags = MODES[mode]
        with in_netns(netns):
            current = bpf.xdp_query_id(lk.index, flags)
            old = None
            if current:
                ours = pin.exists() and bpf.Program.from_pin(str(pin)).id == current
                if not ours and not force:
                    raise DataplaneError(
                        f"{ifname} already runs XDP program id {current}, which is not this data plane's; "
                        "detach it or pass --force"
                    )
                old = bpf.Program.from_id(current)
            try:
                bpf.xdp_attach(lk.index, prog, flags, old_prog=old)
            except bpf.BpfError as exc:
                raise DataplaneError(f"cannot attach XDP ({mode}) to {ifname}: {exc}") from None
        with contextlib.suppress(FileNotFoundError):
            pin.unlink()
        prog.pin(str(pin))
        log.info("attached %s (id %d, %s) to %s%s", PROG_NAME, prog.id, mode, ifname, f" in {netns}" if netns else "")
        return Attachment(ifname, netns, prog.id, mode, True)

    def detach(self, ifname: str, netns: str | None = None) -> None:
        pin = self._prog_pin(ifname, netns)
        lk = link(ifname, netns)
        with in_netns(netns):
            current = bpf.xdp_query_id(lk.index)
            ours = pin.exists() and bpf.Program.from_pin(str(pin)).id == current
            if current and not ours:
                raise DataplaneError(f"{ifname} runs XDP program id {current}, which is not this data plane's")
            if current:
                bpf.xdp_detach(lk.index)
        with contextlib.suppress(FileNotFoundError):
            pin.unlink()
        if not current:
            raise DataplaneError(f"no xdsr program is attached to {ifname}")

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
def _open_object(pin: Path, max_services: int):  # type: ignore[no-untyped-def]
    obj = bpf.BpfObject(str(bpf_object(PROG_NAME)))
    try:
        for name in ALL_MAPS:
            obj.set_pin_path(name, str(pin / name))
        # Room for every service plus the port-0 fragment entry of each
        # (VIP, protocol, segment), which in the worst case is one per service.
        obj.set_max_entries(MAP_SERVICES, 2 * max_services)
        obj.set_max_entries(MAP_SVC_STATS, max_services)
        yield obj
    finally:
        obj.close()
