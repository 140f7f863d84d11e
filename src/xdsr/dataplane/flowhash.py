"""The data plane's flow hash, computed in Python.

Mirrors bpf/lb/hashing.h: lookup3 hashword() over the packet's address,
port and segment words, then a multiply-shift onto the Maglev slots. The
packet tests check that the program and this module pick the same slot, and
tooling uses it to answer "which backend gets this flow?".
"""

from __future__ import annotations

import ipaddress
import socket
import struct

DEFAULT_HASH_SEED = 0x5D5A1B2C

_M32 = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M32
    a ^= _rol(c, 4)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rol(a, 6)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rol(b, 8)
    b = (b + a) & _M32
    a = (a - c) & _M32
    a ^= _rol(c, 16)
    c = (c + b) & _M32
    b = (b - a) & _M32
    b ^= _rol(a, 19)
    a = (a + c) & _M32
    c = (c - b) & _M32
    c ^= _rol(b, 4)
    b = (b + a) & _M32
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c ^= b
    c = (c - _rol(b, 14)) & _M32
    a ^= c
    a = (a - _rol(c, 11)) & _M32
    b ^= a
    b = (b - _rol(a, 25)) & _M32
    c ^= b
    c = (c - _rol(b, 16)) & _M32
    a ^= c
    a = (a - _rol(c, 4)) & _M32
    b ^= a
    b = (b - _rol(a, 14)) & _M32
    c ^= b
    c = (c - _rol(b, 24)) & _M32
    return a, b, c


def hashword(words: list[int], seed: int) -> int:
    """Bob Jenkins' lookup3 hashword()."""
    n = len(words)
    a = b = c = (0xDEADBEEF + (n << 2) + seed) & _M32
    i = 0
    while n > 3:
        a = (a + words[i]) & _M32
        b = (b + words[i + 1]) & _M32
        c = (c + words[i + 2]) & _M32
        a, b, c = _mix(a, b, c)
        n -= 3
        i += 3
    if n == 0:
        return c
    if n == 3:
        c = (c + words[i + 2]) & _M32
    if n >= 2:
        b = (b + words[i + 1]) & _M32
    a = (a + words[i]) & _M32
    a, b, c = _final(a, b, c)
    return c


def _words(raw: bytes) -> list[int]:
    # The program loads packet bytes as native 32-bit words.
    return list(struct.unpack(f"={len(raw) // 4}I", raw))


def flow_hash(
    src: str,
    dst: str,
    proto: int,
    sport: int = 0,
    dport: int = 0,
    vid: int = 0,
    fragment: bool = False,
    seed: int = DEFAULT_HASH_SEED,
) -> int:
    """The hash the XDP program computes for a packet of this flow.

    Fragments, and protocols other than TCP and UDP, hash without ports.
    """
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError("source and destination must be the same family")
    has_ports = not fragment and proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP)
    ports = _words(struct.pack("!HH", sport, dport))[0] if has_ports else 0
    return hashword([*_words(s.packed), *_words(d.packed), ports, (vid << 16) | proto], seed)


def slot_of(hash_value: int, table_size: int) -> int:
    """Multiply-shift onto [0, table_size), as hashing.h hash_to_slot()."""
    return (hash_value * table_size) >> 32
