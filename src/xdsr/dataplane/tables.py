"""How a service's table is laid out in the kernel's global arrays, and back.

The layout is described in bpf/lb/xdsr_kern_user.h: a service's Maglev slots
are a run of 64-byte chunks in xdsr_slots holding backend indexes (1 byte
each up to 255 backends, 2 bytes beyond), and its backends a run of 16-byte
entries in xdsr_backends (per backend of an overlay service: the backend, its
underlay next hop with an IPv4 endpoint, and only when some endpoint of the
service is IPv6 a third entry for that address).
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from xdsr.dataplane import abi
from xdsr.dataplane.model import Backend, Service
from xdsr.maglev import MaglevBackend, build_table
from xdsr.maglev.maglev import build_tables
from xdsr.net.frames import mac_bytes, mac_str

BACKEND_SIZE = ctypes.sizeof(abi.Backend)


def narrow(n_backends: int) -> bool:
    """1-byte slots: half the cache footprint of 2-byte ones."""
    return n_backends <= abi.MAX_NARROW


def slot_chunks(table_size: int, n_backends: int) -> int:
    per_chunk = abi.CHUNK_SIZE if narrow(n_backends) else abi.CHUNK_SIZE // 2
    return -(-table_size // per_chunk)


class _Endpointed(Protocol):
    """A backend as the data plane has it (model.Backend) or as the operator
    compiles it (model.agent.RuleBackend): both know their tunnel endpoint."""

    @property
    def vtep(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None: ...


def stride(backends: Iterable[_Endpointed], overlay: bool) -> int:
    """Entries of xdsr_backends per backend of a service (what its index
    entry's backend_stride holds): 1 on a VLAN; behind tunnels
    abi.TUNNEL4_STRIDE (32 bytes, one cache line) when every endpoint is
    IPv4, else abi.TUNNEL_STRIDE (a third entry for an IPv6 address)."""
    if not overlay:
        return 1
    if all(b.vtep is not None and b.vtep.version == 4 for b in backends):
        return abi.TUNNEL4_STRIDE
    return abi.TUNNEL_STRIDE


def backend_entries(n_backends: int, stride: int = 1) -> int:
    """Entries of xdsr_backends that n backends of a service take."""
    return n_backends * stride


def table_bytes(table_size: int, n_backends: int, stride: int = 1) -> int:
    """Bytes of kernel memory a service's table takes: its slots and backends."""
    return slot_chunks(table_size, n_backends) * abi.CHUNK_SIZE + backend_entries(n_backends, stride) * BACKEND_SIZE


def table_digest(svc: Service) -> int:
    """What the table depends on (not which service it serves): services with
    equal digests can share one table."""
    doc = {
        "m": svc.table_size,
        "b": [b.digest_fields() for b in svc.backends],
    }
    h = hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def maglev_slots(table_size: int, backends: tuple[Backend, ...]) -> np.ndarray:
    """Slot -> index into backends; empty when no backend takes traffic."""
    if not any(b.weight > 0 for b in backends):
        return np.zeros(0, dtype=np.uint16)
    return build_table([MaglevBackend(b.identity, b.weight) for b in backends], table_size)


def maglev_slots_many(services: list[Service]) -> list[np.ndarray]:
    """[maglev_slots(s.table_size, s.backends) for s in services], built side
    by side (a node receiving a whole group builds thousands at once)."""
    weighted = [s for s in services if any(b.weight > 0 for b in s.backends)]
    built = iter(
        build_tables([([MaglevBackend(b.identity, b.weight) for b in s.backends], s.table_size) for s in weighted])
    )
    empty = np.zeros(0, dtype=np.uint16)
    return [next(built) if any(b.weight > 0 for b in s.backends) else empty for s in services]


def encode_slots(table_size: int, n_backends: int, slots: np.ndarray) -> bytes:
    """The slot chunks: every slot's backend index, padded to whole chunks.
    With no backend taking traffic, every slot holds the "none" marker (an
    index past the end), which the program counts as no backend and drops."""
    wide = not narrow(n_backends)
    dtype, none = ("<u2", 0xFFFF) if wide else ("u1", 0xFF)
    per_chunk = abi.CHUNK_SIZE // (2 if wide else 1)
    out = np.full(slot_chunks(table_size, n_backends) * per_chunk, none, dtype=dtype)
    out[: len(slots)] = slots
    return out.tobytes()


def _encode_tunnel(b: Backend, compact: bool) -> bytes:
    if b.vtep is None or not b.hop_mac:
        raise ValueError(f"backend {b.identity} of an overlay service has no tunnel endpoint or next hop")
    be = abi.Backend(vid=0, weight=b.weight, vni=b.vni)
    ctypes.memmove(be.mac, mac_bytes(b.mac), 6)
    hop = abi.BackendHop(family=abi.Family.IPV4 if b.vtep.version == 4 else abi.Family.IPV6)
    ctypes.memmove(hop.mac, mac_bytes(b.hop_mac), 6)
    if b.vtep.version == 4:
        ctypes.memmove(hop.addr4, b.vtep.packed, 4)
    if compact:
        return bytes(be) + bytes(hop)
    ep = abi.BackendVtep()
    if b.vtep.version == 6:
        ctypes.memmove(ep.addr, b.vtep.packed, 16)
    return bytes(be) + bytes(hop) + bytes(ep)


def _decode_tunnel(raw: bytes) -> Backend:
    be = abi.Backend.from_buffer_copy(raw, 0)
    hop = abi.BackendHop.from_buffer_copy(raw, BACKEND_SIZE)
    if hop.family == abi.Family.IPV4:
        vtep: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(bytes(hop.addr4))
    else:
        vtep = ipaddress.IPv6Address(bytes(abi.BackendVtep.from_buffer_copy(raw, 2 * BACKEND_SIZE).addr))
    return Backend(mac_str(bytes(be.mac)), 0, be.weight, vni=be.vni, vtep=vtep, hop_mac=mac_str(bytes(hop.mac)))


_BACKEND_DTYPE = np.dtype(
    {
        "names": ["mac", "vid", "weight"],
        "formats": [("u1", 6), "<u2", "<u4"],
        "offsets": [abi.Backend.mac.offset, abi.Backend.vid.offset, abi.Backend.weight.offset],
        "itemsize": BACKEND_SIZE,
    }
)


def encode_backends(backends: tuple[Backend, ...], stride: int = 1) -> bytes:
    """The backends' entries (struct xdsr_backend), as the kernel reads them:
    `stride` (stride()) entries each."""
    if stride > 1:
        return b"".join(_encode_tunnel(b, stride == abi.TUNNEL4_STRIDE) for b in backends)
    out = np.zeros(len(backends), dtype=_BACKEND_DTYPE)
    if backends:
        # MACs are normalized ("02:00:00:00:00:01"): the hex digits are the bytes.
        out["mac"] = np.frombuffer(bytes.fromhex("".join(b.mac for b in backends).replace(":", "")), np.uint8).reshape(
            -1, 6
        )
        out["vid"] = [b.vlan for b in backends]
        out["weight"] = [b.weight for b in backends]
    return out.tobytes()


def decode_backends(raw: bytes, n_backends: int, stride: int = 1) -> tuple[Backend, ...]:
    if stride > 1:
        size = stride * BACKEND_SIZE
        return tuple(_decode_tunnel(raw[i * size : (i + 1) * size]) for i in range(n_backends))
    arr = np.frombuffer(raw, dtype=_BACKEND_DTYPE, count=n_backends)
    return tuple(
        Backend(mac_str(bytes(mac)), vid, weight)
        for mac, vid, weight in zip(arr["mac"].tolist(), arr["vid"].tolist(), arr["weight"].tolist(), strict=True)
    )


def decode_slots(raw: bytes, table_size: int, n_backends: int) -> np.ndarray:
    dtype = "u1" if narrow(n_backends) else "<u2"
    return np.frombuffer(raw, dtype=dtype, count=table_size).astype(np.uint16)
