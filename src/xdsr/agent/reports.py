"""What changed in an agent's reports, numbered, so that a poll
(GET /v1/state?since=) is answered with what changed since the poller's
last answer, not with every report (docs/architecture.md, "Poll").

Two kinds of change are numbered on one sequence: a load balancer's reports
(an apply, a backend going up or down: its reports are sent again whole),
and a service's counters (seen to move when a poll reads every counter: only
the two numbers are sent). A restarted agent is another instance: a `since`
of an earlier one cannot be told apart, and gets everything.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable

from xdsr.model.agent import owner

Counters = tuple[int, int]  # (packets, bytes) of one service


class ReportLog:
    def __init__(self) -> None:
        self.instance = uuid.uuid4().hex
        self.seq = 0
        self._floor = 0  # every report changed at this seq: an older `since` gets everything
        self._reported_at = 0  # seq of the last change to reports (not counters)
        self._lbs: OrderedDict[str, int] = OrderedDict()  # lb id -> seq of its last change, oldest first
        self._moved: OrderedDict[str, int] = OrderedDict()  # service id -> seq its counters last moved
        self.seen: dict[str, Counters] = {}  # service id -> its counters at the last read of them all

    def changed(self, lbs: Iterable[str] | None) -> None:
        """The reports of `lbs` (None: of every load balancer) may read otherwise now."""
        self.seq += 1
        self._reported_at = self.seq
        if lbs is None:
            self._floor = self.seq
            self._lbs.clear()
            self._moved.clear()
            return
        for lb in lbs:
            self._lbs[lb] = self.seq
            self._lbs.move_to_end(lb)

    def counted(self, counters: dict[str, Counters], read_at: int) -> int:
        """Every installed service's counters, read while the sequence was at
        `read_at`: those that moved since the last such read are numbered.
        Returns the seq the answer built from this read stands at: read_at
        when the reports changed meanwhile (an apply ran during the read: a
        later poll gets those changes again rather than never)."""
        if counters == self.seen:  # a quiet node: compared in C, no walk
            return read_at if self._reported_at > read_at else self.seq
        moved = [sid for sid, c in counters.items() if self.seen.get(sid) != c]
        for sid in self.seen.keys() - counters.keys():
            self._moved.pop(sid, None)  # gone: its load balancer's reports changed (an apply)
        self.seen = counters
        if moved:
            self.seq += 1
            for sid in moved:
                self._moved[sid] = self.seq
                self._moved.move_to_end(sid)
        return read_at if self._reported_at > read_at else self.seq

    def known(self, instance: str, since: int) -> bool:
        """Whether what changed after `since` of `instance` can be told."""
        return instance == self.instance and self._floor <= since <= self.seq

    def changed_since(self, since: int) -> set[str]:
        """The load balancers (held or gone) whose reports changed after
        `since` (known() first). Walks only what changed, newest first."""
        out: set[str] = set()
        for lb in reversed(self._lbs):
            if self._lbs[lb] <= since:
                break
            out.add(lb)
        return out

    def moved_since(self, since: int, but: set[str]) -> dict[str, Counters]:
        """The counters, as last read, of the services whose counters moved
        after `since`, but those of the load balancers `but` (whose reports
        are sent whole)."""
        out: dict[str, Counters] = {}
        for sid in reversed(self._moved):
            if self._moved[sid] <= since:
                break
            if owner(sid) not in but:
                out[sid] = self.seen[sid]
        return out
