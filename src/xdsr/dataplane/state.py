"""Applying desired state to the pinned maps, and reading it back.

The kernel is the source of truth: every apply starts by reading the live
service index, so a new process adopts whatever an earlier one left, and
the space the live tables use is known from the index alone.

An apply writes each new or changed table into space no live index entry
references (services with identical tables share one), writes a complete new
index into the index that is not live, and flips xdsr_sel to it with one
4-byte write: packets see the old state or the new one, never a mix, and
the new one at once. Before the next apply touches the index that was live
(or space only it referenced), an RCU grace period must pass, so that no
program still reads it: this process starts one in the background right
after each flip, and an apply by anyone else waits for one first.
Unchanged tables are never rewritten, and an apply that changes nothing
does not touch the kernel at all.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import heapq
import logging
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from xdsr.dataplane import abi, tables
from xdsr.dataplane.flowhash import index_hash
from xdsr.dataplane.loader import MAP_INDEXES, MAP_SEL, MAP_STATS, MAP_SVC_STATS, Dataplane, DataplaneError
from xdsr.dataplane.model import Service, ServiceKey

log = logging.getLogger("xdsr.dataplane")

_ZERO_KEY = b"\0\0\0\0"
ENTRY_SIZE = ctypes.sizeof(abi.SvcEntry)
_FLAGS_OFFSET = abi.SvcEntry.flags.offset
LOCK_DIR = "/run/xdsr/locks"


def _u32(i: int) -> bytes:
    return i.to_bytes(4, "little")


@dataclass(frozen=True)
class InstalledService:
    service: Service
    stats_id: int
    digest: int
    table_offset: int  # first slot chunk of its table: it changes exactly when the table is rewritten
    memory: int  # bytes its table takes in the kernel's arrays
    slots: np.ndarray | None = None


@dataclass
class ApplyReport:
    created: list[ServiceKey] = field(default_factory=list)
    updated: list[ServiceKey] = field(default_factory=list)
    unchanged: list[ServiceKey] = field(default_factory=list)
    removed: list[ServiceKey] = field(default_factory=list)
    # (service, old size, new size): a resized table moves nearly every flow
    resized: list[tuple[ServiceKey, int, int]] = field(default_factory=list)
    fragment_entries: int = 0
    tables_written: int = 0
    index_swapped: bool = False
    buckets_written: int = 0  # index buckets this apply wrote (a changed service: about one)
    seconds: float = 0.0
    # The services this apply created or updated, as the kernel now holds
    # them: a caller keeping its own copy of what is installed updates it
    # from these instead of reading every service back.
    installed: dict[ServiceKey, InstalledService] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.index_swapped


def lock_path(pin_dir: os.PathLike[str] | str) -> str:
    name = hashlib.sha256(str(os.path.realpath(pin_dir)).encode()).hexdigest()[:16]
    return os.path.join(LOCK_DIR, f"{name}.lock")


@contextlib.contextmanager
def _locked(dp: Dataplane) -> Iterator[None]:
    """One apply at a time per data plane, across processes: two writers
    could otherwise hand out the same free space.

    The lock file is removed by its holder before unlocking; a waiter that
    then gets the lock on the removed file sees it is not the file at the
    path any more and tries again, so removal never lets two in at once."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = lock_path(dp.pin_dir)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _sel(dp: Dataplane) -> abi.Sel:
    raw = dp.maps[MAP_SEL].lookup(_ZERO_KEY)
    return abi.Sel.from_buffer_copy(raw) if raw else abi.Sel()


def _index_bytes(dp: Dataplane, which: int) -> bytes:
    mm = dp.maps[MAP_INDEXES[which]].mmap(writable=False)
    try:
        return bytes(mm[: dp.index_size * ENTRY_SIZE])
    finally:
        mm.close()


def _parse_index(data: bytes) -> dict[ServiceKey, abi.SvcEntry]:
    return {k: e for k, (_, e) in _parse_buckets(data).items()}


def _parse_buckets(data: bytes) -> dict[ServiceKey, tuple[int, abi.SvcEntry]]:
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, ENTRY_SIZE)
    used = np.flatnonzero(raw[:, _FLAGS_OFFSET] & abi.SvcFlags.USED)
    out = {}
    for b in used.tolist():
        e = abi.SvcEntry.from_buffer_copy(data, b * ENTRY_SIZE)
        out[ServiceKey.from_abi(e.key)] = (b, e)
    return out


def index_digest(dp: Dataplane) -> bytes:
    """Digest of the live index: it names every service, its table and where
    they are, so it changes whenever anyone changes what the kernel forwards."""
    return hashlib.sha256(_index_bytes(dp, _sel(dp).live & 1)).digest()


@dataclass(frozen=True)
class Usage:
    """How full the maps are, read from the live index."""

    services: int
    max_services: int
    table_memory: int  # bytes of Maglev slots the maps hold
    table_memory_used: int  # bytes live tables take (shared tables once)
    backends: int  # backend entries the maps hold
    backends_used: int

    @property
    def table_memory_free(self) -> int:
        return self.table_memory - self.table_memory_used


def usage(dp: Dataplane) -> Usage:
    entries = read_index(dp)
    tables_ = {(e.slot_base, tables.slot_chunks(e.table_size, e.n_backends)) for e in entries.values()}
    backends = {(e.backend_base, tables.backend_entries(e.n_backends, e.backend_stride)) for e in entries.values()}
    return Usage(
        services=sum(1 for k in entries if k.port),
        max_services=dp.max_services,
        table_memory=dp.slot_chunks * abi.CHUNK_SIZE,
        table_memory_used=sum(n for _, n in tables_) * abi.CHUNK_SIZE,
        backends=dp.backend_slots,
        backends_used=sum(n for _, n in backends),
    )


def read_index(dp: Dataplane) -> dict[ServiceKey, abi.SvcEntry]:
    """Every used bucket of the live index (fragment entries included)."""
    return _parse_index(_index_bytes(dp, _sel(dp).live & 1))


class _Space:
    """Free space of one global array, from the extents live entries use
    (counted: entries sharing a table share its extent)."""

    def __init__(self, capacity: int, what: str) -> None:
        self.capacity = capacity
        self.what = what
        self._extents: list[tuple[int, int]] = []  # (start, length), sorted, no duplicates
        self._refs: dict[tuple[int, int], int] = {}
        self._cursor = 0

    def reserve(self, start: int, length: int) -> None:
        if length:
            ext = (start, length)
            n = self._refs.get(ext, 0)
            self._refs[ext] = n + 1
            if not n:
                bisect.insort(self._extents, ext)

    def release(self, start: int, length: int) -> None:
        """One reference fewer; the extent is free once none is left."""
        if length:
            ext = (start, length)
            n = self._refs.get(ext, 0) - 1
            if n > 0:
                self._refs[ext] = n
            elif n == 0:
                del self._refs[ext]
                del self._extents[bisect.bisect_left(self._extents, ext)]

    def _fits(self, pos: int, length: int, align: int = 1) -> int | None:
        """The first position >= pos, a multiple of align, where length fits, or None."""
        pos = -(-pos // align) * align
        i = max(0, bisect.bisect_left(self._extents, (pos, 0)) - 1)
        for s, n in self._extents[i:]:
            if s + n <= pos:
                continue
            if s >= pos + length:
                break
            pos = -(-(s + n) // align) * align
        return pos if pos + length <= self.capacity else None

    def alloc(self, length: int, align: int = 1) -> int:
        """First fit from where the last allocation ended, then from 0 (at
        a multiple of align)."""
        if length == 0:
            return 0
        for origin in (self._cursor, 0):
            pos = self._fits(origin, length, align)
            if pos is not None:
                self.reserve(pos, length)
                self._cursor = pos + length
                return pos
        free = self.capacity - sum(n for _, n in self._extents)
        raise DataplaneError(
            f"no room for {length} more {self.what} ({free} of {self.capacity} free, maybe not in one piece): "
            "raise the limit when creating the maps (xdsr dp attach --table-memory / --max-backends)"
        )


def _entry(
    key: ServiceKey,
    slot_base: int,
    table_size: int,
    backend_base: int,
    n_backends: int,
    stats_id: int,
    digest: int,
    tdigest: int,
    stride: int = 1,
) -> abi.SvcEntry:
    flags = abi.SvcFlags.USED | (abi.SvcFlags.NARROW if tables.narrow(n_backends) else 0)
    e = abi.SvcEntry(
        slot_base=slot_base,
        table_size=table_size,
        backend_base=backend_base,
        n_backends=n_backends,
        flags=int(flags),
        backend_stride=stride,
        stats_id=stats_id,
        digest=digest,
        table_digest=tdigest,
    )
    ctypes.memmove(ctypes.addressof(e.key), key.pack(), ctypes.sizeof(abi.SvcKey))
    return e


def _with_key(e: abi.SvcEntry, key: ServiceKey) -> abi.SvcEntry:
    copy = abi.SvcEntry.from_buffer_copy(bytes(e))
    ctypes.memmove(ctypes.addressof(copy.key), key.pack(), ctypes.sizeof(abi.SvcKey))
    return copy


# Most keys an apply places are ones placed before: their home bucket is hashed once.
_home = functools.lru_cache(maxsize=1 << 14)(index_hash)


class _Index:
    """An index being written: open addressing with linear probing, changed
    in place (a removal shifts back the entries after it, so that a lookup,
    which stops at an empty bucket, still finds every key)."""

    def __init__(self, size: int, data: bytes | None = None, where: dict[ServiceKey, int] | None = None) -> None:
        self.size = size
        self.mask = size - 1
        self.buf = bytearray(data) if data is not None else bytearray(size * ENTRY_SIZE)
        self.keys: list[ServiceKey | None] = [None] * size
        self.where: dict[ServiceKey, int] = dict(where or {})
        for k, b in self.where.items():
            self.keys[b] = k
        self.written = 0  # buckets written: what an apply changed in the index

    def _home(self, key: ServiceKey) -> int:
        return _home(key.pack()) & self.mask

    def _put(self, b: int, key: ServiceKey | None, data: bytes) -> None:
        self.buf[b * ENTRY_SIZE : (b + 1) * ENTRY_SIZE] = data
        self.keys[b] = key
        if key is not None:
            self.where[key] = b
        self.written += 1

    def set(self, key: ServiceKey, e: abi.SvcEntry) -> None:
        b = self.where.get(key)
        if b is not None:
            self._put(b, key, bytes(e))
            return
        b = self._home(key)
        for _ in range(abi.INDEX_PROBES):
            if self.keys[b] is None:
                self._put(b, key, bytes(e))
                return
            b = (b + 1) & self.mask
        raise DataplaneError(
            f"the service index has no bucket within {abi.INDEX_PROBES} of {key}'s: "
            "create the maps for more services (xdsr dp attach --max-services)"
        )

    def remove(self, key: ServiceKey) -> None:
        hole = self.where.pop(key)
        j = hole
        while True:
            j = (j + 1) & self.mask
            k = self.keys[j]
            if k is None:
                break
            # k may move back into the hole if that keeps it at or after its home.
            if (j - self._home(k)) & self.mask >= (j - hole) & self.mask:
                self._put(hole, k, bytes(self.buf[j * ENTRY_SIZE : (j + 1) * ENTRY_SIZE]))
                hole = j
        self._put(hole, None, bytes(ENTRY_SIZE))


def _build_index(entries: list[tuple[ServiceKey, abi.SvcEntry]], size: int) -> bytes:
    """A whole index, placed in key order so that the same services give the same bytes."""
    index = _Index(size)
    for key, e in sorted(entries, key=lambda x: x[0]):
        index.set(key, e)
    return bytes(index.buf)


def _flip(dp: Dataplane, sel: abi.Sel, data: bytes | bytearray) -> None:
    """Write a complete index into the one that is not live, make it live,
    and start the grace period after which the old one may be written."""
    nxt = 1 - (sel.live & 1)
    mm = dp.maps[MAP_INDEXES[nxt]].mmap()
    try:
        mm[: len(data)] = data
    finally:
        mm.close()
    seq = (sel.seq + 1) & 0xFFFFFFFF
    dp.maps[MAP_SEL].update(_ZERO_KEY, bytes(abi.Sel(live=nxt, seq=seq)))
    dp.flipped_seq = seq
    dp.barrier = threading.Thread(target=dp.wait_grace_period, name="xdsr grace period", daemon=True)
    dp.barrier.start()


def _quiesce(dp: Dataplane, sel: abi.Sel) -> None:
    """Until no program still reads the index that is not live: the grace
    period this process started after its last flip, or a new one."""
    if dp.flipped_seq == sel.seq and dp.barrier is not None:
        dp.barrier.join()
        return
    dp.wait_grace_period()


def _extents(e: abi.SvcEntry) -> tuple[tuple[int, int], tuple[int, int]]:
    """(slot chunks, backends) an entry's table takes: (start, length) each."""
    n = int(e.n_backends)
    # A backend behind a tunnel takes several entries: the entry says how many.
    return (int(e.slot_base), tables.slot_chunks(e.table_size, n)), (
        int(e.backend_base),
        tables.backend_entries(n, int(e.backend_stride)),
    )


class _Live:
    """What the live index holds, kept between applies by the process that
    wrote it: an apply that changes k services then costs O(k), not a walk
    of every service. Checked against the live index's bytes at every apply
    (anyone else's write makes it be read from the kernel again)."""

    def __init__(self, dp: Dataplane, data: bytes) -> None:
        parsed = _parse_buckets(data)
        self.data = data
        self.index = _Index(dp.index_size, data, {k: b for k, (b, _) in parsed.items()})
        self.entries = {k: e for k, (_, e) in parsed.items()}  # fragment entries included
        self.slots = _Space(dp.slot_chunks, "slot chunks")
        self.backends = _Space(dp.backend_slots, "backends")
        self.shared: dict[int, list[object]] = {}  # table digest -> [an entry holding it, references]
        for e in self.entries.values():
            self._ref(e)
        self.real = {k for k in self.entries if k.port}
        used = {int(self.entries[k].stats_id) for k in self.real}
        self.free_ids = [i for i in range(dp.max_services) if i not in used]  # a heap
        self.frags: dict[ServiceKey, set[ServiceKey]] = defaultdict(set)  # port-0 key -> its services
        for k in self.real:
            self.frags[k.fragment_key()].add(k)

    def _ref(self, e: abi.SvcEntry) -> None:
        (s0, sn), (b0, bn) = _extents(e)
        self.slots.reserve(s0, sn)
        self.backends.reserve(b0, bn)
        held = self.shared.setdefault(int(e.table_digest), [e, 0])
        held[1] = int(held[1]) + 1  # type: ignore[call-overload]

    def _unref(self, e: abi.SvcEntry) -> None:
        (s0, sn), (b0, bn) = _extents(e)
        self.slots.release(s0, sn)
        self.backends.release(b0, bn)
        held = self.shared.get(int(e.table_digest))
        if held is not None:
            held[1] = int(held[1]) - 1  # type: ignore[call-overload]
            if held[1] <= 0:
                del self.shared[int(e.table_digest)]

    def table(self, tdigest: int) -> abi.SvcEntry | None:
        held = self.shared.get(tdigest)
        return held[0] if held is not None else None  # type: ignore[return-value]


# Per data plane, what this process last wrote (see _Live).
_live: weakref.WeakKeyDictionary[Dataplane, _Live] = weakref.WeakKeyDictionary()


def _live_state(dp: Dataplane, data: bytes) -> _Live:
    live = _live.get(dp)
    if live is None or live.data != data:
        live = _Live(dp, data)
        _live[dp] = live
    return live


def _zero_counters(dp: Dataplane, stats_ids: list[int]) -> None:
    """Counters of new services from zero: one batched write."""
    if not stats_ids:
        return
    m = dp.maps[MAP_SVC_STATS]
    dp.maps[MAP_SVC_STATS].update_batch(
        b"".join(_u32(i) for i in stats_ids), bytes(m.value_size * len(stats_ids)), len(stats_ids)
    )


def _check_sizes(services: list[Service]) -> None:
    for s in services:
        if len(s.backends) > abi.MAX_BACKENDS:
            raise DataplaneError(f"{s.key}: {len(s.backends)} backends, at most {abi.MAX_BACKENDS}")


def apply(dp: Dataplane, services: list[Service]) -> ApplyReport:
    """Make the kernel hold exactly these services. Idempotent."""
    if len(services) > dp.max_services:
        raise DataplaneError(
            f"{len(services)} services do not fit: the data plane in {dp.pin_dir} holds {dp.max_services}"
        )
    return _apply(dp, services, None)


def apply_changes(dp: Dataplane, upsert: list[Service], remove: list[ServiceKey]) -> ApplyReport:
    """Change what the kernel holds: these services created or replaced,
    those keys removed, every other service left as it is. Its cost is that
    of the change (plus copying the index), whatever the kernel holds."""
    return _apply(dp, upsert, set(remove))


def _apply(dp: Dataplane, services: list[Service], remove: set[ServiceKey] | None) -> ApplyReport:
    """remove None: `services` is everything (apply); else a change (apply_changes)."""
    t0 = time.perf_counter()
    report = ApplyReport()
    _check_sizes(services)
    with _locked(dp):
        sel = _sel(dp)
        _quiesce(dp, sel)
        live_bytes = _index_bytes(dp, sel.live & 1)
        live = _live_state(dp, live_bytes)
        try:
            _apply_locked(dp, sel, live, live_bytes, services, remove, report)
        except BaseException:
            _live.pop(dp, None)  # half changed: read the kernel again next time
            raise
    report.seconds = time.perf_counter() - t0
    log.info(
        "applied %d services: %d created, %d updated, %d unchanged, %d removed, %d tables written in %.1f ms",
        len(services),
        len(report.created),
        len(report.updated),
        len(report.unchanged),
        len(report.removed),
        report.tables_written,
        report.seconds * 1000,
    )
    return report


def _apply_locked(
    dp: Dataplane,
    sel: abi.Sel,
    live: _Live,
    live_bytes: bytes,
    services: list[Service],
    remove: set[ServiceKey] | None,
    report: ApplyReport,
) -> None:
    entries = live.entries
    desired = {s.key: s for s in services}
    if remove is None:
        removed = sorted(k for k in live.real if k not in desired)
    else:
        removed = sorted(k for k in remove if k in live.real and k not in desired)
    count = len(live.real) - len(removed) + sum(1 for k in desired if k not in live.real)
    if count > dp.max_services:
        raise DataplaneError(f"{count} services do not fit: the data plane in {dp.pin_dir} holds {dp.max_services}")

    # Which services change, and the tables to build (all at once: many
    # small tables of one shape are built side by side).
    changed: list[tuple[ServiceKey, Service, int]] = []
    builds: dict[int, Service] = {}
    for key, svc in sorted(desired.items()):
        old = entries.get(key)
        if old is not None and old.digest == svc.digest():
            report.unchanged.append(key)
            continue
        tdigest = tables.table_digest(svc)
        changed.append((key, svc, tdigest))
        if live.table(tdigest) is None:
            builds.setdefault(tdigest, svc)
    built = dict(zip(builds, tables.maglev_slots_many(list(builds.values())), strict=True))

    # Written into space no live entry references; references are counted
    # for the new entries now, and released for the old ones after the flip.
    index = live.index
    dropped: list[abi.SvcEntry] = []
    new_ids: list[int] = []
    leaving = [int(entries[k].stats_id) for k in removed]
    for key, svc, tdigest in changed:
        old = entries.get(key)
        if old is not None:
            stats_id = int(old.stats_id)
            report.updated.append(key)
            if old.table_size != svc.table_size:
                report.resized.append((key, int(old.table_size), svc.table_size))
        else:
            stats_id = heapq.heappop(live.free_ids) if live.free_ids else leaving.pop()
            new_ids.append(stats_id)
            report.created.append(key)
        n = len(svc.backends)
        stride = tables.stride(svc.backends, key.overlay)
        have = live.table(tdigest)
        if have is not None:
            slot_base, backend_base = int(have.slot_base), int(have.backend_base)
        else:
            chunks = tables.slot_chunks(svc.table_size, n)
            slot_base = live.slots.alloc(chunks)
            entries_n = tables.backend_entries(n, stride)
            # A compact backend's 32 bytes start at an even entry: one cache line.
            backend_base = live.backends.alloc(entries_n, abi.TUNNEL4_STRIDE if stride == abi.TUNNEL4_STRIDE else 1)
            # alloc() reserved them; _ref() below counts the entry's reference.
            live.slots.release(slot_base, chunks)
            live.backends.release(backend_base, entries_n)
            data = tables.encode_slots(svc.table_size, n, built[tdigest])
            dp.slots[slot_base * abi.CHUNK_SIZE : slot_base * abi.CHUNK_SIZE + len(data)] = data
            data = tables.encode_backends(svc.backends, stride)
            start = backend_base * tables.BACKEND_SIZE
            dp.backends[start : start + len(data)] = data
            report.tables_written += 1
        e = _entry(key, slot_base, svc.table_size, backend_base, n, stats_id, svc.digest(), tdigest, stride)
        live._ref(e)
        if old is not None:
            dropped.append(old)
        entries[key] = e
        index.set(key, e)
        report.installed[key] = InstalledService(
            svc, stats_id, int(e.digest), slot_base, tables.table_bytes(svc.table_size, n, stride)
        )
    _zero_counters(dp, new_ids)
    for key in removed:
        dropped.append(entries.pop(key))
        index.remove(key)
        live.real.discard(key)
        live.frags[key.fragment_key()].discard(key)
    for key in report.created:
        live.real.add(key)
        live.frags[key.fragment_key()].add(key)
    report.removed = removed

    # A non-first fragment carries no port, and every fragment of a datagram
    # must reach one backend, so all fragments of a (VIP, protocol, segment)
    # use one table: that of its service with the lowest port.
    for fkey in sorted({k.fragment_key() for k in (*removed, *(k for k, _, _ in changed))}):
        group = live.frags.get(fkey)
        have = entries.get(fkey)
        if not group:
            live.frags.pop(fkey, None)
            if have is not None:
                dropped.append(entries.pop(fkey))
                index.remove(fkey)
                report.fragment_entries += 1
            continue
        want = _with_key(entries[min(group, key=lambda k: k.port)], fkey)
        if have is not None and bytes(have) == bytes(want):
            continue
        live._ref(want)
        if have is not None:
            dropped.append(have)
        entries[fkey] = want
        index.set(fkey, want)
        report.fragment_entries += 1

    if index.written:
        data = bytes(index.buf)
        if data != live_bytes:
            _flip(dp, sel, data)
            report.index_swapped = True
        live.data = data
    report.buckets_written = index.written
    index.written = 0
    # What the old index alone referenced is free from the next apply on
    # (which waits for the grace period first).
    for e in dropped:
        live._unref(e)
    for i in leaving:
        heapq.heappush(live.free_ids, i)


def installed(dp: Dataplane, with_slots: bool = False) -> list[InstalledService]:
    """The services in the kernel, rebuilt from the maps alone."""
    out = []
    for key, e in sorted(read_index(dp).items()):
        if key.port == 0:
            continue  # fragment entries mirror a real service's table
        n = e.n_backends
        start = e.backend_base * tables.BACKEND_SIZE
        size = tables.backend_entries(n, e.backend_stride) * tables.BACKEND_SIZE
        backends = tables.decode_backends(dp.backends[start : start + size], n, e.backend_stride)
        slots = None
        if with_slots:
            begin = e.slot_base * abi.CHUNK_SIZE
            raw = dp.slots[begin : begin + tables.slot_chunks(e.table_size, n) * abi.CHUNK_SIZE]
            slots = tables.decode_slots(raw, e.table_size, n)
        svc = Service(key, int(e.table_size), backends)
        out.append(
            InstalledService(
                svc,
                int(e.stats_id),
                int(e.digest),
                int(e.slot_base),
                tables.table_bytes(e.table_size, n, e.backend_stride),
                slots,
            )
        )
    return out


@dataclass(frozen=True)
class CounterValue:
    packets: int
    bytes: int


@dataclass(frozen=True)
class Stats:
    reasons: dict[abi.Reason, CounterValue]
    services: dict[ServiceKey, CounterValue]


def _sum_percpu(raw: bytes) -> CounterValue:
    arr = np.frombuffer(raw, dtype="<u8").reshape(-1, ctypes.sizeof(abi.Counter) // 8)
    return CounterValue(int(arr[:, 0].sum()), int(arr[:, 1].sum()))


def read_stats(dp: Dataplane, services: list[InstalledService] | None = None) -> Stats:
    """Counters summed over CPUs: per verdict reason, and per service."""
    st = dp.maps[MAP_STATS]
    reasons = {}
    for r in abi.Reason:
        raw = st.lookup(_u32(r))
        reasons[r] = _sum_percpu(raw) if raw else CounterValue(0, 0)
    per_svc = {}
    svc_stats = dp.maps[MAP_SVC_STATS]
    inst_list = services if services is not None else installed(dp)
    if len(inst_list) * 16 >= svc_stats.info.max_entries:
        # Most of the array: read it whole in one syscall (a poll reads
        # every service's counters: 1 ms instead of 29 ms for 4096).
        width = ctypes.sizeof(abi.Counter) // 8
        sums = np.frombuffer(svc_stats.values_batch(), dtype="<u8").reshape(-1, svc_stats.value_size // 8)
        sums = sums.reshape(len(sums), -1, width).sum(axis=1).tolist()
        for inst in inst_list:
            packets, bytes_ = sums[inst.stats_id]
            per_svc[inst.service.key] = CounterValue(packets, bytes_)
        return Stats(reasons, per_svc)
    for inst in inst_list:
        raw = svc_stats.lookup(_u32(inst.stats_id))
        per_svc[inst.service.key] = _sum_percpu(raw) if raw else CounterValue(0, 0)
    return Stats(reasons, per_svc)
