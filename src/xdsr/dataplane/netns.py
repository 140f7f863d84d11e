"""Entering a network namespace for netlink work, without leaving the mount
namespace (bpffs pins under /sys/fs/bpf must stay visible, which rules out
`ip netns exec`, as it remounts /sys)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body (this thread only) inside the named network namespace."""
    if not name:
        yield
        return
    path = f"/run/netns/{name}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"network namespace {name!r} does not exist ({path})")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: str
    mtu: int


def link(ifname: str, netns: str | None = None) -> Link:
    """Index, MAC and MTU of an interface, looked up over netlink in netns."""
    with in_netns(netns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            where = f" in network namespace {netns}" if netns else ""
            raise LookupError(f"no interface {ifname!r}{where}")
        msg = ipr.get_links(found[0])[0]
        return Link(ifname, found[0], msg.get_attr("IFLA_ADDRESS"), int(msg.get_attr("IFLA_MTU")))
