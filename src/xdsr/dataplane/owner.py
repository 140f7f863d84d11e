"""Who owns a pin directory: one writer of an LB node's tables at a time.

An agent owns its data plane for its whole life; `xdsr dp attach/apply/
detach/purge` own it for the length of one command. A second owner gets a
clear error naming the first one's pid instead of silently replacing the
tables the first one believes it holds.

The lock is flock(2) on the pin directory itself: the kernel drops it when
the owner exits, however it exits, and there is no lock file to leave behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from xdsr.dataplane.loader import Dataplane, DataplaneError, ensure_bpffs, remove_pins


class OwnedError(DataplaneError):
    """Another process owns the pin directory."""


def _holder(fd: int) -> int | None:
    """Pid holding a flock on the file of fd, from /proc/locks."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
                    return int(fields[4])
    except OSError:
        pass
    return None


class Owner:
    """The held lock on one pin directory; release() (or exit) frees it."""

    def __init__(self, pin_dir: Path, fd: int, created: bool, had_maps: bool) -> None:
        self.pin_dir = pin_dir
        self.fd = fd
        self.created = created  # this owner made the directory
        self.had_maps = had_maps  # a data plane was pinned there before

    def undo(self) -> None:
        """After a failed start: remove the maps this owner pinned where
        there were none, the directory too if it made it, and unlock."""
        if not self.had_maps:
            with contextlib.suppress(OSError):
                if self.created:
                    remove_pins(self.pin_dir)
                else:
                    for entry in self.pin_dir.iterdir():
                        entry.unlink()
        self.release(remove_if_empty=True)

    def release(self, *, remove_if_empty: bool = False) -> None:
        """Unlock; with remove_if_empty, remove a directory this owner made
        and nothing was pinned in (a start that failed leaves nothing)."""
        if self.fd < 0:
            return
        if remove_if_empty and self.created:
            with contextlib.suppress(OSError):
                if not any(self.pin_dir.iterdir()):
                    self.pin_dir.rmdir()
        os.close(self.fd)
        self.fd = -1


def acquire(pin_dir: str | os.PathLike[str], what: str) -> Owner:
    """Own pin_dir (creating it on bpffs if missing), or raise OwnedError."""
    pin = Path(pin_dir)
    ensure_bpffs(pin)
    created = False
    try:
        pin.mkdir(parents=True)
        created = True
    except FileExistsError:
        pass
    except PermissionError:
        raise DataplaneError(f"cannot create {pin}: permission denied (run as root)") from None
    fd = os.open(pin, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        pid = _holder(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        by = f"process {pid}" if pid else "another process"
        raise OwnedError(
            f"the data plane in {pin} is owned by {by} (an xdsr agent or another xdsr dp command): "
            f"{what} would replace tables it believes it holds; stop it first, or change the tables through it"
        ) from None
    return Owner(pin, fd, created, Dataplane.exists(pin))


@contextlib.contextmanager
def owned(pin_dir: str | os.PathLike[str], what: str, *, undo_on_error: bool = False) -> Iterator[Owner]:
    """Own pin_dir for the body. With undo_on_error, a body that fails in a
    directory that held no data plane before leaves none behind: maps it
    pinned are removed, and the directory if this call made it."""
    owner = acquire(pin_dir, what)
    try:
        yield owner
    except BaseException:
        if undo_on_error:
            owner.undo()
        else:
            owner.release()
        raise
    owner.release()
