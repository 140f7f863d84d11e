"""Python mirror of bpf/lb/xdsr_kern_user.h.

tests/dataplane/test_abi.py checks every structure and enum here against the
BTF that clang emits for the header, so a change on one side fails the suite
until the other follows.
"""

from __future__ import annotations

import ctypes
import enum

ABI_VERSION = 5

CHUNK_SIZE = 64
INDEX_PROBES = 32
# In a frame's XDP metadata: a probe, judged but never counted (xdsr_kern_user.h).
PROBE_MARK = 0x62727078
MAX_BACKENDS = 65535
MAX_NARROW = 255
SEG_TYPE_SHIFT = 24  # a key's segment: its type above this bit, its id below
TUNNEL_STRIDE = 3  # entries of xdsr_backends per backend of an overlay service
TUNNEL4_STRIDE = 2  # the same when every endpoint is IPv4: 32 bytes, aligned


class SegType(enum.IntEnum):
    VLAN = 1
    VXLAN = 2
    GENEVE = 3


class Family(enum.IntEnum):
    IPV4 = 4
    IPV6 = 6


class Reason(enum.IntEnum):
    FORWARDED = 0
    NOT_FOR_US = 1
    NOT_IP = 2
    NO_SERVICE = 3
    MALFORMED = 4
    NO_BACKEND = 5
    UNSUPPORTED = 6
    TX_ERROR = 7
    FRAGMENT = 8
    VLAN_PUSH = 9
    VLAN_POP = 10
    ICMP_ERROR = 11


REASON_MAX = 12

# What the program does for each reason; the details count forwarded packets
# a second time and have no verdict of their own.
REASON_VERDICT = {
    Reason.FORWARDED: "tx",
    Reason.NOT_FOR_US: "pass",
    Reason.NOT_IP: "pass",
    Reason.NO_SERVICE: "pass",
    Reason.MALFORMED: "drop",
    Reason.NO_BACKEND: "drop",
    Reason.UNSUPPORTED: "drop",
    Reason.TX_ERROR: "drop",
    Reason.FRAGMENT: "detail",
    Reason.VLAN_PUSH: "detail",
    Reason.VLAN_POP: "detail",
    Reason.ICMP_ERROR: "detail",
}


class SvcFlags(enum.IntFlag):
    USED = 1
    NARROW = 2


class SvcKey(ctypes.Structure):
    _fields_ = [
        ("addr", ctypes.c_uint8 * 16),
        ("port", ctypes.c_uint16),  # network byte order
        ("proto", ctypes.c_uint8),
        ("family", ctypes.c_uint8),  # Family
        ("segment", ctypes.c_uint32),  # seg_type << SEG_TYPE_SHIFT | seg_id
    ]


class SvcEntry(ctypes.Structure):
    _fields_ = [
        ("key", SvcKey),
        ("slot_base", ctypes.c_uint32),
        ("table_size", ctypes.c_uint32),
        ("backend_base", ctypes.c_uint32),
        ("n_backends", ctypes.c_uint16),
        ("flags", ctypes.c_uint8),
        ("backend_stride", ctypes.c_uint8),  # entries of xdsr_backends per backend (tables.stride)
        ("stats_id", ctypes.c_uint32),
        ("reserved1", ctypes.c_uint32),
        ("digest", ctypes.c_uint64),
        ("table_digest", ctypes.c_uint64),
    ]


class Sel(ctypes.Structure):
    _fields_ = [("live", ctypes.c_uint32), ("seq", ctypes.c_uint32)]


class SlotChunk(ctypes.Union):
    _fields_ = [
        ("narrow", ctypes.c_uint8 * CHUNK_SIZE),
        ("wide", ctypes.c_uint16 * (CHUNK_SIZE // 2)),
    ]


class Backend(ctypes.Structure):
    _fields_ = [
        ("mac", ctypes.c_uint8 * 6),
        ("vid", ctypes.c_uint16),
        ("weight", ctypes.c_uint32),
        ("vni", ctypes.c_uint32),  # 0 on a VLAN
    ]


class BackendHop(ctypes.Structure):
    """Second entry of a tunnel backend: the underlay next hop's MAC, and an
    IPv4 endpoint (the last entry of a backend in TUNNEL4_STRIDE)."""

    _fields_ = [
        ("mac", ctypes.c_uint8 * 6),
        ("family", ctypes.c_uint8),  # Family of the endpoint
        ("reserved0", ctypes.c_uint8),
        ("addr4", ctypes.c_uint8 * 4),  # the endpoint if IPv4
        ("reserved1", ctypes.c_uint32),
    ]


class BackendVtep(ctypes.Structure):
    """Third entry of a tunnel backend (TUNNEL_STRIDE only): an IPv6 endpoint."""

    _fields_ = [("addr", ctypes.c_uint8 * 16)]


class VtepFamilies(enum.IntFlag):
    IPV4 = 1
    IPV6 = 2


class Counter(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class Meta(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("max_services", ctypes.c_uint32),
        ("index_size", ctypes.c_uint32),
        ("slot_chunks", ctypes.c_uint32),
        ("backend_slots", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class ProgCfg(ctypes.Structure):
    _fields_ = [
        ("mac", ctypes.c_uint8 * 6),
        ("reserved", ctypes.c_uint16),
        ("ifindex", ctypes.c_uint32),
        ("hash_seed", ctypes.c_uint32),
        ("index_mask", ctypes.c_uint32),
        ("vxlan_port", ctypes.c_uint16),  # network byte order; 0: off
        ("geneve_port", ctypes.c_uint16),
        ("vtep4", ctypes.c_uint8 * 16),  # IPv4 mapped
        ("vtep6", ctypes.c_uint8 * 16),
        ("vtep_families", ctypes.c_uint8),  # VtepFamilies
        ("reserved1", ctypes.c_uint8 * 7),
    ]


# Every mirrored type, by its C name, for the ABI test.
STRUCTS: dict[str, type[ctypes.Structure] | type[ctypes.Union]] = {
    "xdsr_svc_key": SvcKey,
    "xdsr_svc_entry": SvcEntry,
    "xdsr_sel": Sel,
    "xdsr_slot_chunk": SlotChunk,
    "xdsr_backend": Backend,
    "xdsr_backend_hop": BackendHop,
    "xdsr_backend_vtep": BackendVtep,
    "xdsr_counter": Counter,
    "xdsr_meta": Meta,
    "xdsr_prog_cfg": ProgCfg,
}

ENUMS: dict[str, dict[str, int]] = {
    "xdsr_abi": {"XDSR_ABI_VERSION": ABI_VERSION},
    "xdsr_seg_type": {f"XDSR_SEG_{s.name}": s.value for s in SegType},
    "xdsr_family": {f"XDSR_FAMILY_{f.name}": f.value for f in Family},
    "xdsr_layout": {
        "XDSR_CHUNK_SIZE": CHUNK_SIZE,
        "XDSR_INDEX_PROBES": INDEX_PROBES,
        "XDSR_MAX_BACKENDS": MAX_BACKENDS,
        "XDSR_MAX_NARROW": MAX_NARROW,
        "XDSR_SEG_TYPE_SHIFT": SEG_TYPE_SHIFT,
        "XDSR_TUNNEL_STRIDE": TUNNEL_STRIDE,
        "XDSR_TUNNEL4_STRIDE": TUNNEL4_STRIDE,
    },
    "xdsr_svc_flags": {f"XDSR_SVC_{f.name}": f.value for f in SvcFlags},
    "xdsr_reason": {**{f"XDSR_R_{r.name}": r.value for r in Reason}, "XDSR_R_MAX": REASON_MAX},
    "xdsr_probe": {"XDSR_PROBE_MARK": PROBE_MARK},
    "xdsr_vtep_families": {f"XDSR_VTEP_{f.name}": f.value for f in VtepFamilies},
}
