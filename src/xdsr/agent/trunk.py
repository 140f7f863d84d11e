"""The agent's raw socket on the trunk, shared by MAC resolution and health
checks: frames go out with the VLAN tag in them (the node has no VLAN device),
and what the XDP program passes to the host comes back, filtered in the kernel
by a classic BPF program so the agent wakes up only for what it asked about.

A socket belongs to the namespace it was created in: it is created by a
thread that enters the LB node's namespace for that call only (bpffs stays
visible to the rest of the agent), and then lives on the event loop.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator

from xdsr.dataplane.netns import in_netns
from xdsr.net import sockfilter
from xdsr.net.frames import ETH_P_ALL

log = logging.getLogger("xdsr.agent.trunk")

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 0x08
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_CSUM_VALID = 0x80
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata


def open_socket(ifname: str, netns: str | None, prog: list[tuple[int, int, int, int]]) -> socket.socket:
    """A non-blocking AF_PACKET socket on ifname (inside netns) that sees
    only the frames `prog` accepts."""
    with in_netns(netns):
        # Protocol 0 receives nothing until bind(), so the filter is in
        # place before the first frame arrives.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sockfilter.attach(sock, prog)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    return sock


def receive(sock: socket.socket, batch: int = 256) -> Iterator[tuple[bytes, int, bool]]:
    """Frames waiting on sock, at most `batch` (then the loop breathes and
    calls again): (frame, VLAN, whether to verify its L4 checksum).

    The kernel moves the outer 802.1Q tag out of the frame before packet taps
    see it: its VID comes in PACKET_AUXDATA. A locally generated frame may
    carry a partial checksum, and one the driver checked needs no second look.
    """
    for _ in range(batch):
        try:
            data, ancdata, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(_AUXDATA.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("reading the trunk socket: %s", exc)
            return
        if addr[2] == PACKET_OUTGOING:
            continue
        vid, verify = 0, True
        for level, kind, raw in ancdata:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(raw) >= _AUXDATA.size:
                status, _len, _snap, _mac, _net, tci, _tpid = _AUXDATA.unpack_from(raw)
                if status & TP_STATUS_VLAN_VALID:
                    vid = tci & 0x0FFF
                verify = not status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)
        yield data, vid, verify
