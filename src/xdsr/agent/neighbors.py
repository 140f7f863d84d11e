"""What the agent knows about members' MACs, and when to ask again.

One entry per (VLAN, address) that some member of the desired state needs
resolved. Unresolved entries are asked for every `retry` seconds; resolved
ones are confirmed every `refresh` seconds (with jitter, so a thousand
members resolved by one PUT do not all ask again in the same second).

A resolved entry whose refresh goes unanswered keeps its MAC: silence is not
evidence the MAC changed (a busy host, a lost frame), whereas dropping the
member would reshuffle its flows on this node only and make it disagree
with the other nodes of its group. Whether a member is healthy is the
operator's health checks' business; the agent keeps asking (backing off to
`refresh`) and takes a new MAC as soon as one answers.

The table is saved to a file under /run (tmpfs), so a restarted agent
starts with the MACs it had: the operator re-sends the full state after a
restart, and without them every mac-less member would have to answer within
the PUT's short deadline or be dropped from tables that still forward to it.
/run, like bpffs, is emptied at reboot, so the file never outlives the
tables it describes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xdsr.agent.resolver import NeighborKey
from xdsr.dataplane.model import normalize_mac

log = logging.getLogger("xdsr.agent.resolve")

FILE_VERSION = 1


@dataclass
class Neighbor:
    mac: str | None = None
    confirmed_at: float | None = None  # unix time of the last answer
    next_probe: float = 0.0  # monotonic time the next question is due
    failures: int = 0  # questions unanswered since the last answer


class NeighborTable:
    def __init__(self, refresh: float = 30.0, retry: float = 1.0) -> None:
        self.refresh = refresh
        self.retry = retry
        self.entries: dict[NeighborKey, Neighbor] = {}
        # Bumped whenever what save() writes changes: a caller saving after
        # every apply skips the write (of every MAC) when nothing changed.
        self.changes = 0

    def mac(self, key: NeighborKey) -> str | None:
        n = self.entries.get(key)
        return n.mac if n else None

    def macs(self) -> dict[NeighborKey, str]:
        return {k: n.mac for k, n in self.entries.items() if n.mac}

    def want(self, keys: Iterable[NeighborKey]) -> list[NeighborKey]:
        """Track keys; return the new ones (never asked for: a PUT waits for
        their answers). Known ones, answered or not, are the resolve
        loop's business, so a member that is down does not slow every PUT."""
        out = []
        for key in keys:
            if key not in self.entries:
                self.entries[key] = Neighbor()
                out.append(key)
        return out

    def prune(self, keep: set[NeighborKey]) -> None:
        """Forget what no member needs any more (after a successful apply:
        until then the old state, and its members, still forward)."""
        for key in [k for k in self.entries if k not in keep]:
            if self.entries.pop(key).mac:
                self.changes += 1

    def forget(self, keys: Iterable[NeighborKey]) -> None:
        """prune() for the keys a change left unneeded, without looking at the others."""
        for key in keys:
            n = self.entries.pop(key, None)
            if n is not None and n.mac:
                self.changes += 1

    def due(self, now: float) -> list[NeighborKey]:
        return [k for k, n in self.entries.items() if n.next_probe <= now]

    def record(self, key: NeighborKey, mac: str | None, now: float) -> str | None:
        """Take the outcome of a question; return what it meant:
        resolved, confirmed, changed or timeout (None: key no longer tracked)."""
        n = self.entries.get(key)
        if n is None:
            return None
        if mac is None:
            n.failures += 1
            if n.mac is None:
                n.next_probe = now + self.retry
            else:
                n.next_probe = now + min(self.retry * 2 ** min(n.failures, 16), self.refresh)
            return "timeout"
        result = "resolved" if n.mac is None else "confirmed" if n.mac == mac else "changed"
        n.mac = mac
        n.failures = 0
        n.confirmed_at = time.time()
        self.changes += 1
        n.next_probe = now + self.refresh * random.uniform(0.8, 1.0)
        return result

    def counts(self) -> dict[str, int]:
        out = {"resolved": 0, "unresolved": 0, "stale": 0}
        for n in self.entries.values():
            out["unresolved" if n.mac is None else "stale" if n.failures else "resolved"] += 1
        return out

    # -- the file --------------------------------------------------------

    def save(self, path: Path, dataplane: str) -> None:
        """Write the MACs known, for the data plane identified by `dataplane`."""
        doc = {
            "version": FILE_VERSION,
            "dataplane": dataplane,
            "neighbors": [
                {"vlan": vid, "address": str(addr), "mac": n.mac, "confirmed_at": n.confirmed_at}
                for (vid, addr), n in sorted(self.entries.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
                if n.mac
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one

    def load(self, path: Path, now: float, dataplane: str) -> int:
        """Adopt the MACs a previous agent saved for this very data plane;
        each is asked again at once (due now), so a change while no agent ran
        is caught within a second. A missing or unreadable file, or one
        written for other maps (purged and created again, another pin dir),
        means starting empty: its MACs describe tables that are gone."""
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("ignoring neighbour cache %s: %s", path, exc)
            return 0
        if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
            log.warning("ignoring neighbour cache %s: unknown format", path)
            return 0
        if doc.get("dataplane") != dataplane:
            log.info("ignoring neighbour cache %s: written for another data plane (%s)", path, doc.get("dataplane"))
            return 0
        n = 0
        for item in doc.get("neighbors") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                key = (int(item["vlan"]), ipaddress.ip_address(item["address"]))
                mac = normalize_mac(str(item["mac"]))
                if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
                    continue  # never a member's MAC: the file was tampered with
                self.entries[key] = Neighbor(mac, item.get("confirmed_at"), now)
                n += 1
        return n
