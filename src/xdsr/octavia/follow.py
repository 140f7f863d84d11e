"""Between changes: the operating statuses that changed (an LB node down, a
member's MAC resolved, a health check failing) and the listeners' counters,
from one request to the xdsr API server (GET /v2/lbaas/xdsr/statuses), sent
to Octavia for the load balancers Octavia has."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from xdsr.octavia.changes import CHILDREN
from xdsr.octavia.report import Reporter
from xdsr.octavia.xdsr_api import XdsrClient, XdsrRefused, XdsrUnreachable

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]

# How long "Octavia does not have this load balancer" is believed (it may be a create not yet committed).
NOT_OCTAVIAS_SECONDS = 60.0
# How often a listener's unchanged counters are sent again. Octavia's stats
# listener logs and swallows database errors ("database is locked" under
# load), so a write that seemed to succeed may be lost; only a resend repairs
# an idle listener's numbers. Changed counters go at every stats tick; all of
# them every tick would add a database write per listener per tick, which on
# SQLite fights Octavia's own API writes.
STATS_RESEND_SECONDS = 60.0


class Follower:
    def __init__(self, lib: Any, xdsr: XdsrClient, reporter: Reporter, busy: Callable[[str], bool]) -> None:
        self.lib = lib  # octavia_lib DriverLibrary (or a stand-in)
        self.xdsr = xdsr
        self.reporter = reporter
        self.busy = busy  # a change of this load balancer is being applied: it reports itself
        self._guard = threading.Lock()
        self._octavia: dict[str, tuple[bool, float]] = {}  # lb id -> (Octavia's?, checked at)
        self._unreachable_logged = False
        self.resend_seconds = STATS_RESEND_SECONDS
        self._stats_sent_at: dict[str, float] = {}  # listener id -> when its counters were last sent

    def forget(self, lb_id: str) -> None:
        with self._guard:
            self._octavia.pop(lb_id, None)

    def _is_octavia(self, lb_id: str) -> bool:
        """Whether Octavia has this load balancer (xdsr may serve others too)."""
        now = time.monotonic()
        with self._guard:
            known = self._octavia.get(lb_id)
        if known is not None and (known[0] or now - known[1] < NOT_OCTAVIAS_SECONDS):
            return known[0]
        mine = self.lib.get_loadbalancer(lb_id) is not None
        with self._guard:
            self._octavia[lb_id] = (mine, now)
        return mine

    def follow(self, stats: bool = True) -> None:
        """Report operating statuses that changed, and (stats) listener counters:
        those that changed, and every listener's again each resend_seconds."""
        try:
            statuses = self.xdsr.statuses()
        except (XdsrUnreachable, XdsrRefused) as exc:
            if not self._unreachable_logged:
                LOG.warning("xdsr: cannot follow statuses: %s", exc)
                self._unreachable_logged = True
            return
        self._unreachable_logged = False
        last_oper, last_stats = self.reporter.last_oper, self.reporter.last_stats
        now = time.monotonic()
        counters: list[Obj] = []
        for lb_id, st in statuses.items():
            if self.busy(lb_id):
                continue
            if st["provisioning_status"].startswith("PENDING_") or not self._is_octavia(lb_id):
                continue
            changed: Obj = {}
            entries = [("loadbalancers", st)] + [(k, e) for k in CHILDREN for e in st[k]]
            for key, e in entries:
                if last_oper.get((key, e["id"])) != e["operating_status"]:
                    changed.setdefault(key, []).append({"id": e["id"], "operating_status": e["operating_status"]})
            if changed:
                self.reporter.status(changed)
            if stats:
                # Absolute counters, as Octavia's amphora driver sends them: the
                # changed ones, and the others again every resend_seconds.
                for li in st["listeners"]:
                    if (
                        last_stats.get(li["id"]) == (li["bytes_in"], li["packets_in"])
                        and now - self._stats_sent_at.get(li["id"], -1e18) < self.resend_seconds
                    ):
                        continue
                    counters.append(
                        {
                            "id": li["id"],
                            "bytes_in": li["bytes_in"],
                            # L2DSR sees only inbound packets and keeps no connection state.
                            "bytes_out": 0,
                            "active_connections": 0,
                            "total_connections": 0,
                            "request_errors": 0,
                            "packets_in": li["packets_in"],  # xdsr's; Octavia keeps only the fields above
                        }
                    )
        if counters:
            self.reporter.statistics(counters)
            for c in counters:
                self._stats_sent_at[c["id"]] = now
