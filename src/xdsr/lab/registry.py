"""What labs exist and who owns them: each lab records itself in
/run/xdsr-lab/<name>.json, so that cleanup_stale() can remove what a killed
process (SIGKILL, a crashed CI job) left behind; and the sweeps a lab's own
teardown shares with it (processes in its namespaces, the namespaces, its
bpffs directory)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NETNS_RUN_DIR = Path("/run/netns")
REGISTRY_DIR = Path("/run/xdsr-lab")
BPFFS = Path("/sys/fs/bpf")


def proc_start_time(pid: int) -> int | None:
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


def netns_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
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


def kill_netns_pids(names: Iterable[str]) -> list[int]:
    killed: list[int] = []
    for pids in netns_pids(names).values():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def delete_netns(name: str) -> None:
    from pyroute2 import netns

    if netns_exists(name):
        netns.remove(name)


def rmtree_bpffs(path: Path) -> None:
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


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a lab's record in one step (readers never see half of one)."""
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def lab_namespaces(prefix: str | None = None) -> list[str]:
    """Namespaces in /run/netns that belong to labs (registered ones), or
    whose name starts with `prefix-`."""
    names = sorted(p.name for p in NETNS_RUN_DIR.glob("*")) if NETNS_RUN_DIR.exists() else []
    if prefix is not None:
        return [n for n in names if n.startswith(prefix + "-")]
    owned: set[str] = set()
    for rec in registry_records():
        owned.update(rec.get("namespaces", []))
    return [n for n in names if n in owned]


def registry_records() -> list[dict[str, Any]]:
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
    for rec in registry_records():
        pid, start = rec.get("pid"), rec.get("start_time")
        if isinstance(pid, int) and start is not None and proc_start_time(pid) == start:
            continue  # the owner is alive: not stale
        names = [n for n in rec.get("namespaces", []) if netns_exists(n)]
        removed.extend(names)
        if dry_run:
            continue
        kill_netns_pids(names)
        for n in reversed(names):
            with contextlib.suppress(Exception):
                delete_netns(n)
        if rec.get("bpffs"):
            rmtree_bpffs(Path(rec["bpffs"]))
        with contextlib.suppress(FileNotFoundError):
            Path(rec["_path"]).unlink()
    return removed
