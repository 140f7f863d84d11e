"""Encoding of a service's Maglev table into the kernel's layout, and back.

The layout is described in bpf/lb/xdsr_kern_user.h: one array of 64-byte
elements holding a header, the slots (16-bit backend indexes, 32 per
element) and the backends (4 per element).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from xdsr.dataplane import abi
from xdsr.dataplane.model import Backend, mac_bytes, mac_str
from xdsr.maglev import MaglevBackend, build_table

E = abi.ELEM_SIZE


def n_chunks(table_size: int) -> int:
    return -(-table_size // abi.SLOTS_PER_CHUNK)


def n_elements(table_size: int, n_backends: int) -> int:
    return 1 + n_chunks(table_size) + -(-max(n_backends, 1) // abi.BACKENDS_PER_BLOCK)


def table_bytes(table_size: int, n_backends: int) -> int:
    """Bytes of table data a service takes in the kernel (without the map's own overhead)."""
    return n_elements(table_size, n_backends) * E


def maglev_slots(table_size: int, backends: tuple[Backend, ...]) -> np.ndarray:
    """Slot -> index into backends; empty when no backend takes traffic."""
    if not any(b.weight > 0 for b in backends):
        return np.zeros(0, dtype=np.uint16)
    return build_table([MaglevBackend(b.identity, b.weight) for b in backends], table_size)


def encode(
    table_size: int, backends: tuple[Backend, ...], stats_id: int, digest: int, slots: np.ndarray | None = None
) -> bytes:
    """The whole table as bytes, element after element, ready for a batch write."""
    if slots is None:
        slots = maglev_slots(table_size, backends)
    chunks = n_chunks(table_size)
    backends_off = 1 + chunks
    out = bytearray(n_elements(table_size, len(backends)) * E)

    hdr = abi.TableHdr(
        table_size=table_size,
        stats_id=stats_id,
        backends_off=backends_off,
        n_backends=len(backends),
        abi_version=abi.ABI_VERSION,
        flags=0,
        digest=digest,
    )
    out[:E] = bytes(hdr)

    # With no backend taking traffic every slot holds an index past the end,
    # which the program counts as "no backend" and drops.
    padded = np.full(chunks * abi.SLOTS_PER_CHUNK, abi.MAX_BACKENDS, dtype="<u2")
    padded[: len(slots)] = slots
    out[E : backends_off * E] = padded.tobytes()

    be = abi.Backend()
    for i, b in enumerate(backends):
        ctypes.memmove(be.mac, mac_bytes(b.mac), 6)
        be.vid = b.vlan
        be.weight = b.weight
        off = backends_off * E + i * ctypes.sizeof(abi.Backend)
        out[off : off + ctypes.sizeof(abi.Backend)] = bytes(be)
    return bytes(out)


@dataclass(frozen=True)
class DecodedTable:
    table_size: int
    stats_id: int
    digest: int
    backends: tuple[Backend, ...]
    slots: np.ndarray | None  # only when the slot elements were read


def decode_header(elem: bytes) -> abi.TableHdr:
    return abi.TableHdr.from_buffer_copy(elem[: ctypes.sizeof(abi.TableHdr)])


def decode_backends(hdr: abi.TableHdr, raw: bytes, n_backends: int) -> tuple[Backend, ...]:
    """raw starts at element hdr.backends_off."""
    size = ctypes.sizeof(abi.Backend)
    out = []
    for i in range(n_backends):
        be = abi.Backend.from_buffer_copy(raw[i * size : (i + 1) * size])
        out.append(Backend(mac_str(bytes(be.mac)), be.vid, be.weight))
    return tuple(out)


def decode_slots(hdr: abi.TableHdr, raw: bytes) -> np.ndarray:
    """raw starts at element 1."""
    return np.frombuffer(raw, dtype="<u2", count=hdr.table_size).copy()
