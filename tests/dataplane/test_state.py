"""Applying desired state to the pinned maps: exact, idempotent, minimal,
atomic per table, and adoptable by a new process."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import needs_root
from xdsr.dataplane import abi
from xdsr.dataplane.config import parse_config
from xdsr.dataplane.loader import MAP_INDEXES, MAP_META, MAP_SEL, Dataplane, DataplaneError, Limits
from xdsr.dataplane.model import Backend, Service, ServiceKey
from xdsr.dataplane.state import apply, apply_changes, installed, read_index, read_stats
from xdsr.dataplane.tables import maglev_slots

pytestmark = needs_root


def services(n: int = 4, backends: int = 5, vip: str = "203.0.113.{i}", **extra: object) -> list[Service]:
    cfg = {
        "services": [
            {
                "vip": vip.format(i=i + 1),
                "port": 80,
                "protocol": "tcp",
                "segment": {"id": 10},
                "backends": [{"mac": f"02:00:00:00:{i:02x}:{j:02x}", "vlan": 100 + j} for j in range(backends)],
                **extra,
            }
            for i in range(n)
        ]
    }
    return parse_config(cfg).to_services()


def test_apply_installs_exactly_the_desired_tables(dp: Dataplane) -> None:
    want = services()
    report = apply(dp, want)
    assert len(report.created) == 4 and not report.updated and not report.removed
    got = installed(dp, with_slots=True)
    assert [s.service for s in got] == sorted(want, key=lambda s: s.key)
    for inst in got:
        assert inst.slots is not None
        np.testing.assert_array_equal(inst.slots, maglev_slots(inst.service.table_size, inst.service.backends))
        assert inst.memory > 0


def test_apply_is_idempotent_and_rewrites_only_what_changed(dp: Dataplane) -> None:
    want = services()
    apply(dp, want)
    ids = {s.service.key: (s.table_offset, s.stats_id) for s in installed(dp)}

    again = apply(dp, want)
    assert len(again.unchanged) == 4 and not again.changed
    assert {s.service.key: (s.table_offset, s.stats_id) for s in installed(dp)} == ids

    changed = list(want)
    changed[1] = Service(want[1].key, want[1].table_size, want[1].backends[:-1])
    report = apply(dp, changed)
    assert report.updated == [want[1].key] and len(report.unchanged) == 3
    after = {s.service.key: (s.table_offset, s.stats_id) for s in installed(dp)}
    for key, (tid, sid) in ids.items():
        if key == want[1].key:
            assert after[key][0] != tid, "the changed table is written into new space"
            assert after[key][1] == sid, "its counters stay"
        else:
            assert after[key] == (tid, sid)


def test_apply_removes_what_it_no_longer_lists(dp: Dataplane) -> None:
    apply(dp, services(4))
    report = apply(dp, services(2))
    assert len(report.removed) == 2
    assert len(installed(dp)) == 2
    apply(dp, [])
    assert installed(dp) == []
    assert read_index(dp) == {}, "fragment entries go with their services"


def test_fragment_entry_follows_the_lowest_port(dp: Dataplane) -> None:
    cfg = {
        "services": [
            {"vip": "203.0.113.9", "port": p, "protocol": "udp", "backends": [{"mac": f"02:00:00:00:09:{p % 256:02x}"}]}
            for p in (53, 123, 5000)
        ]
    }
    svcs = parse_config(cfg).to_services()
    apply(dp, svcs)
    index = read_index(dp)
    frag = ServiceKey(svcs[0].key.vip, 0, socket.IPPROTO_UDP, abi.SegType.VLAN, 0)
    assert index[frag].slot_base == index[svcs[0].key].slot_base
    apply(dp, svcs[1:])
    index = read_index(dp)
    assert index[frag].slot_base == index[svcs[1].key].slot_base


def test_a_new_process_adopts_the_pinned_state(dp: Dataplane, pin_dir: Path) -> None:
    want = services()
    apply(dp, want)
    before = installed(dp)
    with Dataplane.open(pin_dir) as other:
        assert installed(other) == before
        report = apply(other, want[:3])
        assert len(report.unchanged) == 3 and len(report.removed) == 1
    assert len(installed(dp)) == 3


def test_too_many_services_change_nothing(pin_dir: Path) -> None:
    with Dataplane.create_or_open(pin_dir, max_services=3) as small:
        apply(small, services(2))
        before = installed(small)
        with pytest.raises(DataplaneError, match="4 services do not fit"):
            apply(small, services(4))
        assert installed(small) == before


def test_new_services_start_from_zero_counters(dp: Dataplane) -> None:
    (svc,) = services(1)
    apply(dp, [svc])
    (inst,) = installed(dp)
    m = dp.maps["xdsr_svc_stats"]
    m.update(inst.stats_id.to_bytes(4, "little"), b"\x07" * m.value_size)
    apply(dp, [])
    (other,) = services(1, vip="198.51.100.{i}")
    apply(dp, [other])
    assert read_stats(dp).services[other.key].packets == 0


def test_adoption_refuses_another_abi_or_size(dp: Dataplane, pin_dir: Path) -> None:
    with pytest.raises(DataplaneError, match=r"max_services=64.* not .*max_services=128"):
        Dataplane.create_or_open(pin_dir, max_services=128)
    meta = abi.Meta(abi_version=abi.ABI_VERSION + 1, max_services=64)
    dp.maps[MAP_META].update(b"\0\0\0\0", bytes(meta))
    with pytest.raises(DataplaneError, match="ABI version"):
        Dataplane.open(pin_dir)


def test_an_update_is_one_flip_and_the_old_state_stays_whole(dp: Dataplane) -> None:
    """The new index is written complete into the index that is not live and
    made live with one write; the old index, with the old table it points
    to, stays exactly as it was for packets still reading it."""
    (svc,) = services(1)
    apply(dp, [svc])
    sel0 = abi.Sel.from_buffer_copy(dp.maps[MAP_SEL].lookup(b"\0\0\0\0"))  # type: ignore[arg-type]
    (old,) = installed(dp, with_slots=True)
    apply(dp, [Service(svc.key, svc.table_size, svc.backends[:2])])
    sel1 = abi.Sel.from_buffer_copy(dp.maps[MAP_SEL].lookup(b"\0\0\0\0"))  # type: ignore[arg-type]
    assert (sel1.live, sel1.seq) == (1 - sel0.live, sel0.seq + 1)
    (new,) = installed(dp)
    assert new.table_offset != old.table_offset, "the new table went into free space"
    mm = dp.maps[MAP_INDEXES[sel0.live]].mmap(writable=False)
    entries = [abi.SvcEntry.from_buffer_copy(mm, i * 64) for i in range(dp.index_size)]
    mm.close()
    (e,) = [e for e in entries if e.flags & abi.SvcFlags.USED and ServiceKey.unpack(bytes(e.key)) == svc.key]
    assert e.n_backends == 5 and e.digest == old.digest and e.slot_base == old.table_offset
    start = old.table_offset * abi.CHUNK_SIZE
    table = np.frombuffer(dp.slots[start : start + svc.table_size], dtype=np.uint8)
    np.testing.assert_array_equal(table, old.slots)


def test_equal_tables_are_shared(dp: Dataplane) -> None:
    cfg = {
        "services": [
            {"vip": "203.0.113.7", "port": 53, "protocol": p, "backends": [{"mac": "02:00:00:00:07:01"}]}
            for p in ("udp", "tcp")
        ]
    }
    report = apply(dp, parse_config(cfg).to_services())
    assert report.tables_written == 1, "UDP and TCP with the same pool share one table"
    a, b = installed(dp)
    assert a.table_offset == b.table_offset


def test_space_of_replaced_tables_is_reused_and_running_out_changes_nothing(pin_dir: Path) -> None:
    # 8 chunks of slots: a 101-slot table with one backend takes 2, and its
    # next version needs 2 more while the old one still serves.
    limits = Limits(max_services=8, table_memory=8 * abi.CHUNK_SIZE, max_backends=16)
    with Dataplane.create_or_open(pin_dir, limits=limits) as small:
        key = ServiceKey(ipaddress.ip_address("203.0.113.8"), 80, socket.IPPROTO_TCP)
        for i in range(20):
            apply(small, [Service(key, 101, (Backend(f"02:00:00:00:08:{i:02x}", 100),))])
        (inst,) = installed(small)
        assert inst.service.backends[0].mac == "02:00:00:00:08:13"
        big = Service(key, 1009, (Backend("02:00:00:00:08:ff", 100),))
        with pytest.raises(DataplaneError, match="no room for 16 more slot chunks"):
            apply(small, [big])
        assert installed(small) == [inst]


def test_an_apply_that_changes_nothing_does_not_touch_the_kernel(dp: Dataplane) -> None:
    want = services()
    assert apply(dp, want).index_swapped
    again = apply(dp, want)
    assert not again.index_swapped and again.tables_written == 0


def _findable(dp: Dataplane) -> dict[ServiceKey, int]:
    """Every used bucket's key, found the way the program looks it up: from
    its home bucket until the key or an empty bucket, within the probe limit."""
    from xdsr.dataplane.flowhash import index_hash

    sel = abi.Sel.from_buffer_copy(dp.maps[MAP_SEL].lookup(b"\0\0\0\0"))  # type: ignore[arg-type]
    mm = dp.maps[MAP_INDEXES[sel.live & 1]].mmap(writable=False)
    raw = bytes(mm[: dp.index_size * 64])
    mm.close()
    used = {}
    for b in range(dp.index_size):
        e = abi.SvcEntry.from_buffer_copy(raw, b * 64)
        if e.flags & abi.SvcFlags.USED:
            used[ServiceKey.unpack(bytes(e.key))] = b
    for key, at in used.items():
        b = index_hash(key.pack()) & (dp.index_size - 1)
        for _ in range(abi.INDEX_PROBES):
            e = abi.SvcEntry.from_buffer_copy(raw, b * 64)
            assert e.flags & abi.SvcFlags.USED, f"{key}: an empty bucket before it"
            if b == at:
                break
            b = (b + 1) & (dp.index_size - 1)
        else:
            raise AssertionError(f"{key} is beyond the probe limit")
    return used


class _Counting:
    """A map whose element reads and writes are counted."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner, self._calls = inner, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("lookup", "update", "update_batch", "delete", "delete_batch", "keys"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self._calls.append(f"{self._inner.info.name}.{name}")
                return attr(*args, **kwargs)

            return counted
        return attr


def test_a_change_of_one_service_touches_only_that_service(dp: Dataplane, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 60 services held, changing one writes its table, its bucket
    (and its fragment entry's) and the selector; nothing reads the others
    back or walks them."""
    from xdsr.dataplane import state

    want = services(60, backends=3)
    apply(dp, want)
    calls: list[str] = []
    # (The grace period's own map is not the services'.)
    monkeypatch.setattr(
        dp, "maps", {name: m if name == "xdsr_barrier" else _Counting(m, calls) for name, m in dp.maps.items()}
    )
    parsed: list[int] = []
    real_parse = state._parse_buckets
    monkeypatch.setattr(state, "_parse_buckets", lambda data: parsed.append(1) or real_parse(data))
    digests: list[ServiceKey] = []
    real_digest = Service.digest
    monkeypatch.setattr(Service, "digest", lambda s: digests.append(s.key) or real_digest(s))

    one = Service(want[7].key, want[7].table_size, want[7].backends[:2])
    report = apply_changes(dp, [one], [])
    assert report.updated == [one.key] and report.tables_written == 1 and report.index_swapped
    assert report.buckets_written == 2, "its entry and its fragment entry"
    assert parsed == [], "the live index is not parsed again"
    assert set(digests) == {one.key}, "no other service is looked at"
    assert sorted(calls) == ["xdsr_sel.lookup", "xdsr_sel.update"]

    calls.clear()
    report = apply_changes(dp, [], [want[3].key])
    assert report.removed == [want[3].key] and report.tables_written == 0
    assert sorted(calls) == ["xdsr_sel.lookup", "xdsr_sel.update"] and parsed == []
    monkeypatch.undo()
    expect = [one if s.key == one.key else s for s in want if s.key != want[3].key]
    assert [i.service for i in installed(dp)] == sorted(expect, key=lambda s: s.key)


def test_changes_keep_every_key_findable_and_equal_a_full_apply(pin_dir: Path) -> None:
    """Services added, changed and removed one change at a time, in an
    index crowded enough for keys to collide (removals shift entries back):
    every key stays findable by the program's probe, and the kernel holds
    exactly what one full apply of the same services would."""
    import random

    rng = random.Random(7)
    with Dataplane.create_or_open(pin_dir, max_services=24) as small:
        pool = services(24, backends=2) + services(6, backends=1, port=53)
        held: dict[ServiceKey, Service] = {}
        for step in range(120):
            s = rng.choice(pool)
            if s.key in held and rng.random() < 0.5:
                apply_changes(small, [], [s.key])
                del held[s.key]
            elif len(held) < 24 or s.key in held:
                new = Service(s.key, s.table_size, s.backends[: rng.randint(1, len(s.backends))])
                apply_changes(small, [new], [])
                held[s.key] = new
            used = _findable(small)
            assert {k for k in used if k.port} == set(held), f"step {step}"
            assert {k for k in used if not k.port} == {k.fragment_key() for k in held}
            got = {i.service.key: i.service for i in installed(small, with_slots=True)}
            assert got == held
        for inst in installed(small, with_slots=True):
            assert inst.slots is not None
            np.testing.assert_array_equal(inst.slots, maglev_slots(inst.service.table_size, inst.service.backends))
        index = read_index(small)
        for key in held:
            frag = index[key.fragment_key()]
            target = min((k for k in held if k.fragment_key() == key.fragment_key()), key=lambda k: k.port)
            assert frag.slot_base == index[target].slot_base
        report = apply(small, list(held.values()))
        assert not report.index_swapped and report.tables_written == 0, "a full apply finds nothing to change"


def test_ipv4_tunnel_backends_start_at_an_even_entry(dp: Dataplane) -> None:
    """A tunnel backend with an IPv4 endpoint is two entries (32 bytes): the
    service's backends start at an even entry, so each is one cache line,
    however odd the VLAN tables around them; with an IPv6 endpoint among
    them, three entries each. Applied in turns that free and reuse space."""

    def cfg(turn: int) -> list[Service]:
        out: list[dict[str, Any]] = []
        for i in range(6):
            vlan = [{"mac": f"02:00:00:00:{i:02x}:{j:02x}", "vlan": 100} for j in range(1 + (i + turn) % 3)]
            out.append({"vip": f"203.0.113.{i + 1}", "port": 80, "protocol": "tcp", "backends": vlan})
            vteps = [f"192.0.2.{j + 1}" for j in range(1 + (i * turn) % 3)] + (["2001:db8::1"] if i == 5 else [])
            tunnel = [{"mac": f"02:00:00:01:{i:02x}:{j:02x}", "vni": 7, "vtep": v} for j, v in enumerate(vteps)]
            out.append({"vip": f"203.0.113.{i + 1}", "port": 81 + turn, "protocol": "tcp",
                        "segment": {"type": "vxlan", "id": 5}, "backends": tunnel})  # fmt: skip
        return parse_config({"services": out}).to_services("02:00:00:00:00:fe")

    for turn in range(4):
        desired = cfg(turn)
        apply(dp, desired)
        entries = read_index(dp)
        for svc in desired:
            e = entries[svc.key]
            v6 = any(b.vtep is not None and b.vtep.version == 6 for b in svc.backends)
            want = 1 if not svc.key.overlay else abi.TUNNEL_STRIDE if v6 else abi.TUNNEL4_STRIDE
            assert e.backend_stride == want, svc.key
            if want == abi.TUNNEL4_STRIDE:
                assert e.backend_base % 2 == 0, svc.key
        assert sorted((i.service for i in installed(dp)), key=lambda s: s.key) == sorted(desired, key=lambda s: s.key)
