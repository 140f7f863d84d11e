"""When the agent asks again for a MAC, and the cache a restarted agent
starts from. No root needed."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from xdsr.agent.neighbors import NeighborTable

A = (100, ipaddress.ip_address("10.1.0.11"))
B = (100, ipaddress.ip_address("fd00:1::b"))
MAC = "02:1b:02:00:00:00"


def test_schedule() -> None:
    t = NeighborTable(refresh=30, retry=1)
    assert t.want([A, B]) == [A, B]
    assert t.want([A, B]) == []  # only new keys: a PUT waits for those alone
    assert t.due(0) == [A, B]
    assert t.record(A, None, 0) == "timeout"
    assert t.due(0.9) == [B] and t.due(1.0) == [A, B]  # unresolved: every retry
    assert t.record(A, MAC, 1) == "resolved"
    assert t.record(A, MAC, 2) == "confirmed"
    assert t.due(2 + 23) == [B]  # refresh with jitter: between 0.8 and 1.0 x 30 s
    assert A in t.due(2 + 30)
    # Silence keeps the MAC (stale), asking back off from retry to refresh.
    assert t.record(A, None, 40) == "timeout" and t.mac(A) == MAC
    assert t.counts() == {"resolved": 0, "unresolved": 1, "stale": 1}
    assert t.due(41.9) == [B] and A in t.due(42)
    for i in range(10):
        t.record(A, None, 100 + i)
    assert t.entries[A].next_probe == 109 + 30
    assert t.record(A, "02:1b:02:00:00:99", 200) == "changed" and t.mac(A) == "02:1b:02:00:00:99"
    t.prune({B})
    assert t.mac(A) is None and t.record(A, MAC, 300) is None


def test_cache_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "lbn0.neighbors.json"
    t = NeighborTable()
    t.want([A, B])
    t.record(A, MAC, 0)
    t.save(path, "pins#7")
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert NeighborTable().load(path, 0, "pins#8") == 0  # maps created since: the MACs are not theirs
    loaded = NeighborTable()
    assert loaded.load(path, now=5.0, dataplane="pins#7") == 1
    assert loaded.mac(A) == MAC and loaded.mac(B) is None
    assert loaded.due(5.0) == [A]  # confirmed again at once

    doc = json.loads(path.read_text())
    doc["neighbors"].append({"vlan": 100, "address": "10.1.0.12", "mac": "ff:ff:ff:ff:ff:ff"})
    doc["neighbors"].append({"vlan": "x", "address": "nope", "mac": MAC})
    path.write_text(json.dumps(doc))
    assert NeighborTable().load(path, 0, "pins#7") == 1  # the broadcast MAC and the garbage are dropped
    path.write_text("{")
    assert NeighborTable().load(path, 0, "pins#7") == 0
    assert NeighborTable().load(tmp_path / "missing.json", 0, "pins#7") == 0
