"""The data plane's hashes, computed in Python.

Mirrors bpf/lb/hashing.h: 64-bit multiply-xorshift mixing of the packet's
address, port and segment words, then a multiply-shift onto the Maglev
slots; and the index hash that places a service key in the service index.
The packet tests check that the program and this module agree, and tooling
uses it to answer "which backend gets this flow?".
"""

from __future__ import annotations

import ipaddress
import socket
import struct

DEFAULT_HASH_SEED = 0x5D5A1B2C

_M64 = 0xFFFFFFFFFFFFFFFF
K1 = 0xBF58476D1CE4E5B9
K2 = 0x94D049BB133111EB
INDEX_SEED = 0x2545F4914F6CDD1D


def mix64(h: int, v: int) -> int:
    v = (v * K1) & _M64
    v ^= v >> 31
    h ^= v
    return (h * K2) & _M64


def finish64(h: int) -> int:
    h ^= h >> 32
    h = (h * K1) & _M64
    h ^= h >> 29
    return h >> 32


def _words(raw: bytes) -> list[int]:
    # The program loads packet bytes as native 64-bit words.
    return list(struct.unpack(f"={len(raw) // 8}Q", raw))


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
    ports = struct.unpack("=I", struct.pack("!HH", sport, dport))[0] if has_ports else 0
    last = ports | (((vid << 16) | proto) << 32)
    words = [*_words(s.packed + d.packed), last]
    h = seed
    for w in words:
        h = mix64(h, w)
    return finish64(h)


def index_hash(key: bytes) -> int:
    """Home bucket hash of a packed service key (24 bytes)."""
    h = INDEX_SEED
    for w in _words(key):
        h = mix64(h, w)
    return finish64(h)


def slot_of(hash_value: int, table_size: int) -> int:
    """Multiply-shift onto [0, table_size), as hashing.h hash_to_slot()."""
    return (hash_value * table_size) >> 32
