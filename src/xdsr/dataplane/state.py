"""Applying desired state to the pinned maps, and reading it back.

The kernel is the source of truth: every apply starts by reading what is
installed, so a new process adopts whatever an earlier one left. Each
service's table carries a digest of the spec that built it; an apply
rewrites only tables whose digest changed, and each rewrite is one atomic
swap of the table in the service map.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from xdsr.dataplane import abi, tables
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.loader import MAP_SERVICES, MAP_STATS, MAP_SVC_STATS, Dataplane, DataplaneError
from xdsr.dataplane.model import Backend, Service, ServiceKey

log = logging.getLogger("xdsr.dataplane")

_ZERO_KEY = b"\0\0\0\0"


def _u32(i: int) -> bytes:
    return i.to_bytes(4, "little")


@dataclass(frozen=True)
class InstalledService:
    service: Service
    stats_id: int
    digest: int
    table_id: int  # kernel id of the table map: it changes exactly when the table is rewritten
    memlock: int  # bytes the kernel charges for the table
    slots: np.ndarray | None = None


@dataclass
class ApplyReport:
    created: list[ServiceKey] = field(default_factory=list)
    updated: list[ServiceKey] = field(default_factory=list)
    unchanged: list[ServiceKey] = field(default_factory=list)
    removed: list[ServiceKey] = field(default_factory=list)
    fragment_entries: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.fragment_entries)


def _table_ids(dp: Dataplane) -> dict[ServiceKey, int]:
    """Every entry of the service map (fragment entries included) -> table map id."""
    svc = dp.maps[MAP_SERVICES]
    out = {}
    for raw in svc.keys():  # noqa: SIM118 - a BPF map, not a dict
        val = svc.lookup(raw)
        if val is not None:
            out[ServiceKey.unpack(raw)] = int.from_bytes(val, "little")
    return out


def _read_table(table_id: int, with_slots: bool) -> tuple[abi.TableHdr, tuple[Backend, ...], np.ndarray | None, int]:
    with bpf.Map.from_id(table_id) as m:
        hdr_raw = m.lookup(_ZERO_KEY)
        assert hdr_raw is not None
        hdr = tables.decode_header(hdr_raw)
        n_blocks = -(-hdr.n_backends // abi.BACKENDS_PER_BLOCK)
        raw = b"".join(m.lookup(_u32(hdr.backends_off + i)) or b"" for i in range(n_blocks))
        backends = tables.decode_backends(hdr, raw, hdr.n_backends)
        slots = None
        if with_slots:
            raw = b"".join(m.lookup(_u32(1 + i)) or b"" for i in range(tables.n_chunks(hdr.table_size)))
            slots = tables.decode_slots(hdr, raw)
        return hdr, backends, slots, m.memlock()


def installed(dp: Dataplane, with_slots: bool = False) -> list[InstalledService]:
    """The services in the kernel, rebuilt from the maps alone."""
    out = []
    for key, table_id in sorted(_table_ids(dp).items()):
        if key.port == 0:
            continue  # fragment entries mirror a real service's table
        hdr, backends, slots, memlock = _read_table(table_id, with_slots)
        svc = Service(key, int(hdr.table_size), backends)
        out.append(InstalledService(svc, int(hdr.stats_id), int(hdr.digest), table_id, memlock, slots))
    return out


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


def _build_table(svc: Service, stats_id: int) -> bpf.Map:
    """A new table map holding the service's whole table, not yet visible."""
    data = tables.encode(svc.table_size, svc.backends, stats_id, svc.digest())
    n = len(data) // abi.ELEM_SIZE
    inner = bpf.Map.create(bpf.BPF_MAP_TYPE_ARRAY, "xdsr_table", 4, abi.ELEM_SIZE, n, flags=bpf.BPF_F_INNER_MAP)
    try:
        inner.update_batch(np.arange(n, dtype="<u4").tobytes(), data, n)
    except BaseException:
        inner.close()
        raise
    return inner


def apply(dp: Dataplane, services: list[Service]) -> ApplyReport:
    """Make the kernel hold exactly these services. Idempotent.

    Changed tables are built completely in new maps first; then one batch
    update swaps them all into the service map and one batch delete removes
    what is gone. Each swap is atomic for the packets, and the kernel makes
    each batch wait for one RCU grace period instead of one per service.
    """
    t0 = time.perf_counter()
    report = ApplyReport()
    if len(services) > dp.max_services:
        raise DataplaneError(
            f"{len(services)} services do not fit: the data plane in {dp.pin_dir} holds {dp.max_services}"
        )
    desired = {s.key: s for s in services}
    current_ids = _table_ids(dp)
    current: dict[ServiceKey, tuple[int, int]] = {}  # key -> (digest, stats_id)
    for key, tid in current_ids.items():
        if key.port:
            with bpf.Map.from_id(tid) as m:
                raw = m.lookup(_ZERO_KEY)
            if raw is not None:
                hdr = tables.decode_header(raw)
                current[key] = (int(hdr.digest), int(hdr.stats_id))

    # New services take counters nobody uses; those of services this apply
    # removes come last, as their tables still count packets until deleted.
    in_use = {sid for _, sid in current.values()}
    leaving = [sid for key, (_, sid) in current.items() if key not in desired]
    free = iter([*(i for i in range(dp.max_services) if i not in in_use), *leaving])

    new_tables: dict[ServiceKey, bpf.Map] = {}
    try:
        for key, svc in sorted(desired.items()):
            if key in current:
                digest, stats_id = current[key]
                if digest == svc.digest():
                    report.unchanged.append(key)
                    continue
                report.updated.append(key)
            else:
                stats_id = next(free)
                _zero_counters(dp, stats_id)
                report.created.append(key)
            new_tables[key] = _build_table(svc, stats_id)

        # Fragment entries point at the very table of their target service.
        writes: list[tuple[ServiceKey, bpf.Map]] = list(new_tables.items())
        targets = _fragment_targets(services)
        for fkey, target in sorted(targets.items()):
            if target in new_tables:
                writes.append((fkey, new_tables[target]))
            elif current_ids.get(fkey) != current_ids[target]:
                writes.append((fkey, bpf.Map.from_id(current_ids[target])))
            else:
                continue
            report.fragment_entries += 1
        svc_map = dp.maps[MAP_SERVICES]
        if writes:
            keys = b"".join(k.pack() for k, _ in writes)
            values = b"".join(_u32(m.fd) for _, m in writes)
            svc_map.update_batch(keys, values, len(writes))
    finally:
        for m in new_tables.values():
            m.close()  # the service map holds its own references

    gone = [k for k in current_ids if (k.port == 0 and k not in targets) or (k.port and k not in desired)]
    report.removed = sorted(k for k in gone if k.port)
    report.fragment_entries += sum(1 for k in gone if not k.port)
    if gone:
        svc_map.delete_batch(b"".join(k.pack() for k in gone), len(gone))

    report.seconds = time.perf_counter() - t0
    log.info(
        "applied %d services: %d created, %d updated, %d unchanged, %d removed in %.1f ms",
        len(services),
        len(report.created),
        len(report.updated),
        len(report.unchanged),
        len(report.removed),
        report.seconds * 1000,
    )
    return report


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
