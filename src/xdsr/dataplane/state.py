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
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, ENTRY_SIZE)
    used = np.flatnonzero(raw[:, _FLAGS_OFFSET] & abi.SvcFlags.USED)
    out = {}
    for b in used.tolist():
        e = abi.SvcEntry.from_buffer_copy(data, b * ENTRY_SIZE)
        out[ServiceKey.from_abi(e.key)] = e
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
    backends = {(e.backend_base, tables.backend_entries(e.n_backends, k.overlay)) for k, e in entries.items()}
    return Usage(
        services=sum(1 for k in entries if k.port),
        max_services=dp.max_services,
        table_memory=dp.slot_chunks * abi.CHUNK_SIZE,
        table_memory_used=sum(n for _, n in tables_) * abi.CHUNK_SIZE,
        backends=dp.backend_slots,
        backends_used=sum(n for _, n in backends),
    )


# The index this process last wrote, parsed, per data plane: an apply reads
# the live index first (another process may have changed it), and when it is
# still the one this process wrote, parsing thousands of entries again would
# cost more than the change itself. Compared by content, so never stale.
_last_written: weakref.WeakKeyDictionary[Dataplane, tuple[bytes, dict[ServiceKey, abi.SvcEntry]]] = (
    weakref.WeakKeyDictionary()
)


def _parse_live(dp: Dataplane, data: bytes) -> dict[ServiceKey, abi.SvcEntry]:
    cached = _last_written.get(dp)
    if cached is not None and cached[0] == data:
        return dict(cached[1])
    return _parse_index(data)


def read_index(dp: Dataplane) -> dict[ServiceKey, abi.SvcEntry]:
    """Every used bucket of the live index (fragment entries included)."""
    return _parse_index(_index_bytes(dp, _sel(dp).live & 1))


class _Space:
    """Free space of one global array, from the extents live entries use."""

    def __init__(self, capacity: int, what: str) -> None:
        self.capacity = capacity
        self.what = what
        self._extents: list[tuple[int, int]] = []  # (start, length), sorted, no duplicates
        self._cursor = 0

    def reserve(self, start: int, length: int) -> None:
        if length:
            i = bisect.bisect_left(self._extents, (start, length))
            if i == len(self._extents) or self._extents[i] != (start, length):
                self._extents.insert(i, (start, length))

    def _fits(self, pos: int, length: int) -> int | None:
        """The first position >= pos where length fits, or None."""
        i = max(0, bisect.bisect_left(self._extents, (pos, 0)) - 1)
        for s, n in self._extents[i:]:
            if s + n <= pos:
                continue
            if s >= pos + length:
                break
            pos = s + n
        return pos if pos + length <= self.capacity else None

    def alloc(self, length: int) -> int:
        """First fit from where the last allocation ended, then from 0."""
        if length == 0:
            return 0
        for origin in (self._cursor, 0):
            pos = self._fits(origin, length)
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
) -> abi.SvcEntry:
    flags = abi.SvcFlags.USED | (abi.SvcFlags.NARROW if tables.narrow(n_backends) else 0)
    e = abi.SvcEntry(
        slot_base=slot_base,
        table_size=table_size,
        backend_base=backend_base,
        n_backends=n_backends,
        flags=int(flags),
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


# Each apply places every service in a new index, and most keys are the
# ones it placed last time: their home bucket is hashed once.
_home = functools.lru_cache(maxsize=1 << 14)(index_hash)


def report_unchanged(new: abi.SvcEntry, old: abi.SvcEntry | None) -> bool:
    return old is not None and new is old


_KEY_END = abi.SvcEntry.key.offset + abi.SvcEntry.key.size


def _same_table(a: abi.SvcEntry, b: abi.SvcEntry) -> bool:
    """Equal apart from the key: a fragment entry and the entry it mirrors."""
    ra, rb = bytes(a), bytes(b)
    start = abi.SvcEntry.key.offset
    return ra[:start] == rb[:start] and ra[_KEY_END:] == rb[_KEY_END:]


def _build_index(entries: list[tuple[ServiceKey, abi.SvcEntry]], size: int) -> bytes:
    """Open addressing with linear probing, in key order so that the same
    services always give the same bytes."""
    buf = bytearray(size * ENTRY_SIZE)
    taken = bytearray(size)
    mask = size - 1
    for key, e in sorted(entries, key=lambda x: x[0]):
        b = _home(key.pack()) & mask
        for _ in range(abi.INDEX_PROBES):
            if not taken[b]:
                break
            b = (b + 1) & mask
        else:
            raise DataplaneError(
                f"the service index has no bucket within {abi.INDEX_PROBES} of {key}'s: "
                "create the maps for more services (xdsr dp attach --max-services)"
            )
        taken[b] = 1
        buf[b * ENTRY_SIZE : (b + 1) * ENTRY_SIZE] = bytes(e)
    return bytes(buf)


def _flip(dp: Dataplane, sel: abi.Sel, data: bytes) -> None:
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


def _fragment_targets(services: list[Service]) -> dict[ServiceKey, ServiceKey]:
    """Port-0 key of each (VIP, protocol, segment) -> the service its fragments go to.

    A non-first fragment carries no port, and every fragment of a datagram
    must reach one backend, so all fragments of a (VIP, protocol, segment)
    use one table: that of its service with the lowest port.
    """
    groups: dict[ServiceKey, list[ServiceKey]] = defaultdict(list)
    for s in services:
        groups[s.key.fragment_key()].append(s.key)
    return {fk: min(keys, key=lambda k: k.port) for fk, keys in groups.items()}


def _zero_counters(dp: Dataplane, stats_id: int) -> None:
    m = dp.maps[MAP_SVC_STATS]
    m.update(_u32(stats_id), bytes(m.value_size))


def apply(dp: Dataplane, services: list[Service]) -> ApplyReport:
    """Make the kernel hold exactly these services. Idempotent."""
    t0 = time.perf_counter()
    report = ApplyReport()
    if len(services) > dp.max_services:
        raise DataplaneError(
            f"{len(services)} services do not fit: the data plane in {dp.pin_dir} holds {dp.max_services}"
        )
    for s in services:
        if len(s.backends) > abi.MAX_BACKENDS:
            raise DataplaneError(f"{s.key}: {len(s.backends)} backends, at most {abi.MAX_BACKENDS}")
    with _locked(dp):
        sel = _sel(dp)
        _quiesce(dp, sel)
        live_bytes = _index_bytes(dp, sel.live & 1)
        current = _parse_live(dp, live_bytes)
        desired = {s.key: s for s in services}

        # Space the live index references stays untouched until the swap.
        slots_space = _Space(dp.slot_chunks, "slot chunks")
        backends_space = _Space(dp.backend_slots, "backends")
        shared: dict[int, abi.SvcEntry] = {}  # table digest -> an entry holding that table
        for k, e in current.items():
            slots_space.reserve(e.slot_base, tables.slot_chunks(e.table_size, e.n_backends))
            backends_space.reserve(e.backend_base, tables.backend_entries(e.n_backends, k.overlay))
            shared.setdefault(e.table_digest, e)

        # New services take counters nobody uses; those of services this
        # apply removes come last, as they still count until the swap.
        real = {k: e for k, e in current.items() if k.port}
        in_use = {e.stats_id for e in real.values()}
        leaving = [e.stats_id for k, e in real.items() if k not in desired]
        free_ids = iter([*(i for i in range(dp.max_services) if i not in in_use), *leaving])

        entries: dict[ServiceKey, abi.SvcEntry] = {}
        for key, svc in sorted(desired.items()):
            digest = svc.digest()
            old = real.get(key)
            if old is not None and old.digest == digest:
                entries[key] = old
                report.unchanged.append(key)
                continue
            if old is not None:
                stats_id = old.stats_id
                report.updated.append(key)
                if old.table_size != svc.table_size:
                    report.resized.append((key, old.table_size, svc.table_size))
            else:
                stats_id = next(free_ids)
                _zero_counters(dp, stats_id)
                report.created.append(key)
            tdigest = tables.table_digest(svc)
            n = len(svc.backends)
            if tdigest in shared:
                slot_base, backend_base = shared[tdigest].slot_base, shared[tdigest].backend_base
            else:
                chunks = tables.slot_chunks(svc.table_size, n)
                slot_base = slots_space.alloc(chunks)
                backend_base = backends_space.alloc(tables.backend_entries(n, key.overlay))
                slots = tables.maglev_slots(svc.table_size, svc.backends)
                data = tables.encode_slots(svc.table_size, n, slots)
                dp.slots[slot_base * abi.CHUNK_SIZE : slot_base * abi.CHUNK_SIZE + len(data)] = data
                data = tables.encode_backends(svc.backends, key.overlay)
                start = backend_base * tables.BACKEND_SIZE
                dp.backends[start : start + len(data)] = data
                report.tables_written += 1
            entries[key] = _entry(key, slot_base, svc.table_size, backend_base, n, stats_id, digest, tdigest)
            shared.setdefault(tdigest, entries[key])

        for fkey, target in _fragment_targets(services).items():
            have = current.get(fkey)
            if (
                have is not None
                and report_unchanged(entries[target], current.get(target))
                and _same_table(have, entries[target])
            ):
                entries[fkey] = have  # its target's table did not move: the entry is already right
            else:
                entries[fkey] = _with_key(entries[target], fkey)
            if fkey not in current or bytes(current[fkey]) != bytes(entries[fkey]):
                report.fragment_entries += 1
        report.fragment_entries += sum(1 for k in current if not k.port and k not in entries)
        report.removed = sorted(k for k in real if k not in desired)

        for key in (*report.created, *report.updated):
            e = entries[key]
            report.installed[key] = InstalledService(
                desired[key],
                int(e.stats_id),
                int(e.digest),
                int(e.slot_base),
                tables.table_bytes(e.table_size, e.n_backends, key.overlay),
            )

        index = _build_index(list(entries.items()), dp.index_size)
        if index != live_bytes:
            _flip(dp, sel, index)
            report.index_swapped = True
        _last_written[dp] = (index, dict(entries))

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


def installed(dp: Dataplane, with_slots: bool = False) -> list[InstalledService]:
    """The services in the kernel, rebuilt from the maps alone."""
    out = []
    for key, e in sorted(read_index(dp).items()):
        if key.port == 0:
            continue  # fragment entries mirror a real service's table
        n = e.n_backends
        start = e.backend_base * tables.BACKEND_SIZE
        size = tables.backend_entries(n, key.overlay) * tables.BACKEND_SIZE
        backends = tables.decode_backends(dp.backends[start : start + size], n, key.overlay)
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
                tables.table_bytes(e.table_size, n, key.overlay),
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
    for inst in services if services is not None else installed(dp):
        raw = svc_stats.lookup(_u32(inst.stats_id))
        per_svc[inst.service.key] = _sum_percpu(raw) if raw else CounterValue(0, 0)
    return Stats(reasons, per_svc)
