"""The benchmark's BPF programs (bpf/bench/): ctypes mirrors of bench.h,
loading with their configuration and reading their counters (they are
attached with xdsr.dataplane.loader.attach_xdp, as every XDP program is).

Everything goes through xdsr's libbpf binding; nothing here is pinned (the
harness holds the file descriptors, and the lab's namespaces take the
attachments with them).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from xdsr.dataplane import libbpf as bpf
from xdsr.net.frames import mac_bytes
from xdsr.paths import bpf_object

GEN_HDR_MAX = 128
GEN_MAX_VIPS = 256
COUNT_UNTAGGED = 0xFFFF
COUNT_MAX_PROBES = 8
COUNT_HASH_MUL1 = 0x9E3779B97F4A7C15
COUNT_HASH_MUL2 = 0xC2B2AE3D27D4EB4F
U64 = (1 << 64) - 1

# struct xdp_md, as BPF_PROG_TEST_RUN takes it in ctx_in.
XDP_MD = "=6I"


class GenCfg(ctypes.Structure):
    """struct gen_cfg (bench.h)."""

    _fields_ = [
        ("hdr", ctypes.c_uint8 * GEN_HDR_MAX),
        ("vips", ctypes.c_uint32 * GEN_MAX_VIPS),
        ("n_vips", ctypes.c_uint32),
        ("saddr_base", ctypes.c_uint32),
        ("saddr_mask", ctypes.c_uint32),
        ("ip_sum", ctypes.c_uint32),
        ("l4_sum", ctypes.c_uint32),
        ("ip_len", ctypes.c_uint16),
        ("imix_len", ctypes.c_uint16 * 3),
        ("sport_min", ctypes.c_uint16),
        ("sport_span", ctypes.c_uint16),
        ("tagged", ctypes.c_uint8),
        ("proto", ctypes.c_uint8),
        ("imix", ctypes.c_uint8),
        ("vxlan", ctypes.c_uint8),
        ("seed", ctypes.c_uint64),
        ("flow_mask", ctypes.c_uint64),
        ("outer_ip_sum", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class GenState(ctypes.Structure):
    """struct gen_state (bench.h), the generator's .bss."""

    _fields_ = [
        ("seq", ctypes.c_uint64),
        ("errors", ctypes.c_uint64),
        ("imix_pos", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class CountCfg(ctypes.Structure):
    _fields_ = [("src_mac", ctypes.c_uint8 * 6), ("table_bits", ctypes.c_uint8), ("vxlan", ctypes.c_uint8)]


class CountStatsC(ctypes.Structure):
    _fields_ = [
        ("frames", ctypes.c_uint64),
        ("wire_bytes", ctypes.c_uint64),
        ("ok", ctypes.c_uint64),
        ("bad_parse", ctypes.c_uint64),
        ("bad_src", ctypes.c_uint64),
        ("bad_dst", ctypes.c_uint64),
    ]


class BrokenCfg(ctypes.Structure):
    _fields_ = [("every", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


@dataclass(frozen=True)
class CountStats:
    """What the receiver counted (summed over CPUs)."""

    frames: int = 0
    wire_bytes: int = 0
    ok: int = 0
    bad_parse: int = 0
    bad_src: int = 0
    bad_dst: int = 0

    @property
    def wrong(self) -> int:
        return self.frames - self.ok

    def __sub__(self, other: CountStats) -> CountStats:
        return CountStats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: CountStats) -> CountStats:
        return CountStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Expectation:
    """A correctly handled frame: (destination IPv4, destination MAC, VID or None)."""

    daddr: str
    dst_mac: str
    vid: int | None

    def words(self) -> tuple[int, int]:
        """(macvid, daddr) as xdp_count loads them from the frame."""
        mac = mac_bytes(self.dst_mac)
        vid = COUNT_UNTAGGED if self.vid is None else self.vid
        macvid = int.from_bytes(mac, "little") | vid << 48
        return macvid, int.from_bytes(ipaddress.IPv4Address(self.daddr).packed, "little")


def key_hash(macvid: int, daddr: int, bits: int) -> tuple[int, int]:
    """(home slot, fingerprint) of a key, as xdp_count computes them (bench.h)."""
    h = ((macvid ^ (daddr * COUNT_HASH_MUL1 & U64)) * COUNT_HASH_MUL2) & U64
    fp = ((((h ^ (h >> 32)) * COUNT_HASH_MUL1) & U64) >> 32) | 1
    return h >> (64 - bits), fp


def expectation_table(expectations: Iterable[Expectation]) -> tuple[int, dict[int, int]]:
    """Place the keys for xdp_count: (table_bits, slot index -> fingerprint).

    Open addressing with linear probing, at most half full; grows until
    every key sits within COUNT_MAX_PROBES slots of its home (bench.h)."""
    keys = sorted({e.words() for e in expectations})
    bits = max(4, (2 * len(keys) - 1).bit_length())
    while True:
        size = 1 << bits
        slots: dict[int, int] = {}
        for macvid, daddr in keys:
            home, fp = key_hash(macvid, daddr, bits)
            for i in range(COUNT_MAX_PROBES):
                idx = (home + i) & (size - 1)
                if idx not in slots:
                    slots[idx] = fp
                    break
                if slots[idx] == fp:
                    break  # an equal fingerprint in the window accepts this key already
            else:
                break  # too crowded: grow
        else:
            return bits, slots
        bits += 1


def _open(name: str) -> bpf.BpfObject:
    return bpf.BpfObject(str(bpf_object(name)))


class Generator:
    """xdp_gen loaded for one template; run it with live frames."""

    def __init__(self, cfg: GenCfg) -> None:
        with _open("xdp_gen") as obj:
            obj.set_initial_value(".rodata", bytes(cfg))
            obj.load()
            self.prog = obj.program("xdp_gen")
            self._bss = obj.map(".bss")

    def state(self) -> GenState:
        raw = self._bss.lookup(b"\0\0\0\0")
        assert raw is not None
        return GenState.from_buffer_copy(raw[: ctypes.sizeof(GenState)])

    def run_live(self, frame: bytes, ifindex: int, repeat: int, batch_size: int) -> int:
        """Send `repeat` frames out of the interface `ifindex` of the calling
        thread's network namespace (see in_netns); returns the kernel's
        measure of the time the run took, in ns per frame.

        ctx_in is a struct xdp_md: live frames want data_end = the frame's
        length and the ifindex of the interface to send from."""
        ctx = struct.pack(XDP_MD, 0, len(frame), 0, ifindex, 0, 0)
        _, _, ns_per_frame = self.prog.test_run(
            frame, repeat=repeat, ctx=ctx, flags=bpf.BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch_size, out_size=0
        )
        return ns_per_frame

    def run_once(self, frame: bytes) -> tuple[int, bytes]:
        """One frame through the program without sending it: (verdict, frame)."""
        verdict, out, _ = self.prog.test_run(frame, repeat=1, out_size=len(frame) + 64)
        return verdict, out

    def close(self) -> None:
        self.prog.close()
        self._bss.close()


class Counter:
    """xdp_count loaded with one device under test's expectations."""

    def __init__(self, src_mac: str, expectations: Iterable[Expectation], vxlan: bool = False) -> None:
        bits, slots = expectation_table(expectations)
        cfg = CountCfg(table_bits=bits, vxlan=int(vxlan))
        ctypes.memmove(cfg.src_mac, mac_bytes(src_mac), 6)
        with _open("xdp_count") as obj:
            obj.set_initial_value(".rodata", bytes(cfg))
            obj.set_max_entries("count_expect", 1 << bits)
            obj.load()
            self.prog = obj.program("xdp_count")
            self._expect = obj.map("count_expect")
            self._stats = obj.map("count_stats")
        if slots:
            idx = sorted(slots)
            keys = b"".join(i.to_bytes(4, "little") for i in idx)
            values = b"".join(slots[i].to_bytes(4, "little") for i in idx)
            self._expect.update_batch(keys, values, len(idx))
        self.n_expectations = len(slots)
        self.table_bits = bits

    def read(self) -> CountStats:
        raw = self._stats.lookup(b"\0\0\0\0")
        assert raw is not None
        stride = (ctypes.sizeof(CountStatsC) + 7) // 8 * 8
        total = [0] * len(CountStatsC._fields_)
        for off in range(0, len(raw), stride):
            c = CountStatsC.from_buffer_copy(raw[off : off + ctypes.sizeof(CountStatsC)])
            for i, (name, _) in enumerate(CountStatsC._fields_):
                total[i] += getattr(c, name)
        return CountStats(*total)

    def close(self) -> None:
        for fd in (self.prog, self._expect, self._stats):
            fd.close()


def load_broken(every: int) -> bpf.Program:
    """xdp_broken: loopback that corrupts the destination MAC of every Nth frame."""
    with _open("xdp_broken") as obj:
        obj.set_initial_value(".rodata", bytes(BrokenCfg(every=every)))
        obj.load()
        return obj.program("xdp_broken")


def load_simple(name: str) -> bpf.Program:
    """A program without configuration (xdp_tx, xdp_pass)."""
    return bpf.load_program(str(bpf_object(name)), name)


@contextlib.contextmanager
def pinned_to(cpu: int) -> Iterator[None]:
    """Run the body on one CPU (this thread only), then restore the mask."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
