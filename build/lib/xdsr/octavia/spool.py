"""The hand-off from the driver (inside Octavia's API request, inside its
database transaction) to the provider agent (after the commit): one JSON
file per change in a directory both processes share on the host.

A file is written aside and renamed into place, so the agent never reads
half of one; it survives restarts of either process (the agent finishes
what was queued when it comes back); names sort in the order the changes
were made. After writing, the driver pokes the agent through a datagram
socket in the same directory so it wakes at once instead of on its next
poll; a lost poke costs at most one poll interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".json"
WAKE = "wake.sock"


@dataclass(frozen=True)
class Entry:
    path: Path
    op: dict[str, Any]


def put(spool: str | Path, op: dict[str, Any]) -> Path:
    """Queue one change; returns its file. Raises OSError if the spool is unwritable."""
    d = Path(spool)
    d.mkdir(parents=True, exist_ok=True)
    # time_ns first: names sort in queueing order across processes.
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
    tmp = d / f".{name}.tmp"
    data = json.dumps({**op, "queued_at": time.time()}, default=str).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    final = d / f"{name}{SUFFIX}"
    os.rename(tmp, final)
    poke(d)
    return final


def poke(spool: str | Path) -> None:
    """Wake the agent (best effort: it also polls)."""
    path = str(Path(spool) / WAKE)
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.sendto(b"!", path)


def pending(spool: str | Path) -> list[Entry]:
    """Queued changes, oldest first. A file that cannot be parsed is set
    aside (renamed *.bad) rather than retried forever."""
    d = Path(spool)
    out: list[Entry] = []
    try:
        names = sorted(p for p in os.listdir(d) if p.endswith(SUFFIX))
    except FileNotFoundError:
        return out
    for name in names:
        path = d / name
        try:
            op = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.rename(path, path.with_suffix(".bad"))
            continue
        out.append(Entry(path, op))
    return out


def done(entry: Entry) -> None:
    with contextlib.suppress(FileNotFoundError):
        entry.path.unlink()


def wake_socket(spool: str | Path) -> socket.socket:
    """The agent's end: a datagram socket the driver pokes."""
    d = Path(spool)
    d.mkdir(parents=True, exist_ok=True)
    path = d / WAKE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.setblocking(False)
    return s


def drain(s: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while s.recv(64):
            pass
