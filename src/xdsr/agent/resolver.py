"""Asking the network for members' MACs: ARP probes and Neighbor
Solicitations sent out of the trunk on each member's VLAN, answers read
from an AF_PACKET socket on the trunk (trunk.py; see frames.py for why
these frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Collection

from xdsr.agent import frames, trunk
from xdsr.net.frames import mac_bytes

log = logging.getLogger("xdsr.agent.resolve")

NeighborKey = tuple[int, frames.IPAddress]  # (VLAN, address): tenants may reuse addresses


def family(addr: frames.IPAddress) -> str:
    return "ipv4" if isinstance(addr, ipaddress.IPv4Address) else "ipv6"


class Resolver:
    """Sends probes and matches answers to the questions outstanding.

    Only answers to an outstanding question are taken: an unsolicited ARP
    reply or NA is not evidence the agent asked for, and acting on it would
    let any host on a tenant VLAN steer a member's traffic at will."""

    def __init__(self, sock: socket.socket, mac: str) -> None:
        self.sock = sock
        self.mac = mac
        self._mac = mac_bytes(mac)
        self._waiters: dict[NeighborKey, set[asyncio.Future[str]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Plain counters, read by the metrics collector.
        self.probes_sent: dict[str, int] = {"ipv4": 0, "ipv6": 0}
        self.send_errors: dict[str, int] = {"ipv4": 0, "ipv6": 0}
        self.answers: dict[str, int] = {"ipv4": 0, "ipv6": 0}
        self.ignored = 0  # answers nobody asked for

    @classmethod
    def open(cls, ifname: str, netns: str | None, mac: str) -> Resolver:
        """A resolver on ifname (inside netns). Call from a thread without a
        running event loop's expectations about its namespace: this thread
        enters netns for the duration of the call only."""
        return cls(trunk.open_socket(ifname, netns, frames.reply_filter()), mac)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()
        self._waiters.clear()
        self.sock.close()

    # -- asking ----------------------------------------------------------

    def _send(self, key: NeighborKey) -> None:
        vid, addr = key
        fam = family(addr)
        try:
            self.sock.send(frames.probe(self._mac, vid, addr))
            self.probes_sent[fam] += 1
        except OSError as exc:  # a full transmit queue, the link went down
            self.send_errors[fam] += 1
            log.warning("probe vlan=%d address=%s not sent: %s", vid, addr, exc)

    async def resolve(self, keys: Collection[NeighborKey], timeout: float = 0.5) -> dict[NeighborKey, str]:
        """Ask for every key at once; return the MACs that answered within
        timeout (a question is repeated once halfway, for a lost frame)."""
        if not keys:
            return {}
        loop = asyncio.get_running_loop()
        mine: dict[NeighborKey, asyncio.Future[str]] = {}
        for key in keys:
            fut: asyncio.Future[str] = loop.create_future()
            self._waiters.setdefault(key, set()).add(fut)
            mine[key] = fut
        try:
            for key in mine:
                self._send(key)
            await asyncio.wait(mine.values(), timeout=timeout / 2)
            late = [k for k, f in mine.items() if not f.done()]
            if late:
                for key in late:
                    self._send(key)
                await asyncio.wait([mine[k] for k in late], timeout=timeout / 2)
        finally:
            for key, fut in mine.items():
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]
                if not fut.done():
                    fut.cancel()
        return {k: f.result() for k, f in mine.items() if f.done() and not f.cancelled()}

    # -- answers ---------------------------------------------------------

    def _readable(self) -> None:
        for data, vid, verify in trunk.receive(self.sock):
            reply = frames.parse_reply(data, vid, verify_checksum=verify)
            if reply is not None:
                self._answer(reply)

    def _answer(self, reply: frames.Reply) -> None:
        key = (reply.vid, reply.address)
        waiters = self._waiters.get(key)
        if not waiters:
            self.ignored += 1
            log.debug("unsolicited answer vlan=%d address=%s mac=%s", reply.vid, reply.address, reply.mac)
            return
        self.answers[family(reply.address)] += 1
        for fut in waiters:
            if not fut.done():
                fut.set_result(reply.mac)
