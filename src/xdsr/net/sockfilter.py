"""Classic BPF socket filters (SO_ATTACH_FILTER): a small assembler with
labels, so a filter reads as the decision it makes.

A program is a list of instructions (code, jump-if-true, jump-if-false, k);
("label", name, 0, 0) marks a place, and jumps name labels or are 0 (the
next instruction). assemble() resolves the labels into relative jumps.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Callable

from xdsr.net.frames import ETH_HLEN, ETH_P_8021Q, VLAN_HLEN

LD_H_ABS = 0x28  # A = the 16-bit word at k
LD_B_ABS = 0x30  # A = the byte at k
JEQ_K = 0x15  # jump if A == k
RET_K = 0x06  # accept k bytes of the frame (0: drop it)
ACCEPT = 0x40000  # bytes of the frame to keep: all of it

SO_ATTACH_FILTER = 26  # not in the socket module

Ins = tuple[int | str, int | str, int | str, int]


def assemble(prog: list[Ins]) -> list[tuple[int, int, int, int]]:
    """The program with labels removed and jumps made relative."""
    labels: dict[str, int] = {}
    out: list[Ins] = []
    for ins in prog:
        if ins[0] == "label":
            labels[str(ins[1])] = len(out)
        else:
            out.append(ins)

    def rel(target: str | int, pc: int) -> int:
        if isinstance(target, int):
            return target
        return labels[target] - pc - 1

    return [(int(c), rel(jt, pc), rel(jf, pc), k) for pc, (c, jt, jf, k) in enumerate(out)]


def tag_aware(block: Callable[[int], list[Ins]]) -> list[tuple[int, int, int, int]]:
    """A filter that runs block(l3) with l3 the offset of the L3 header: 14
    for an untagged frame, 18 when an 802.1Q tag is still in the frame (the
    kernel usually moves the outer tag out of band, not always). The block
    jumps to the labels "accept" (the whole frame) or "reject"."""
    prog: list[Ins] = [
        (LD_H_ABS, 0, 0, ETH_HLEN - 2),
        (JEQ_K, "tagged", 0, ETH_P_8021Q),
        *block(ETH_HLEN),
        ("label", "tagged", 0, 0),
        *block(ETH_HLEN + VLAN_HLEN),
        ("label", "accept", 0, 0),
        (RET_K, 0, 0, ACCEPT),
        ("label", "reject", 0, 0),
        (RET_K, 0, 0, 0),
    ]
    return assemble(prog)


def sock_fprog(prog: list[tuple[int, int, int, int]]) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    """The struct sock_fprog for SO_ATTACH_FILTER, and the buffer it points
    to (keep it alive until setsockopt returns)."""
    raw = b"".join(struct.pack("=HBBI", c, jt, jf, k) for c, jt, jf, k in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    return struct.pack("@HP", len(prog), ctypes.addressof(buf)), buf


def attach(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """Attach an assembled filter to a socket."""
    fprog, buf = sock_fprog(prog)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    del buf
