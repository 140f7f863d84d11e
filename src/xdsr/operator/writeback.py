"""What the nodes report, written back: statuses, and finished deletions.

A load balancer's status is computed (status.compute) from its document,
its placement and what its group's nodes answer, and written only when it
changed (counters at most every settings.stats_interval). A deleted load
balancer's documents go once every live node of its group has applied the
generation without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from xdsr.model import keys
from xdsr.model.agent import AgentState
from xdsr.model.group import PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.operator.compile import service_key
from xdsr.operator.status import Placement, compute, same_but_stats
from xdsr.operator.view import View, group_epoch
from xdsr.store.base import Conflict
from xdsr.store.docs import dump

log = logging.getLogger("xdsr.operator")


class StatusWriter(View):
    async def _write_statuses(self) -> None:
        where = self._placement_index()
        now = time.monotonic()
        placed_all = self._placed()
        if self._all_dirty:
            todo = self.lbs.values()
        else:
            ids = self._dirty_lbs | {lb_id for g in self._dirty_groups for lb_id in placed_all.get(g, {})}
            todo = [lb for lb in (self.lbs.get(i) for i in ids) if lb is not None]
        self._dirty_lbs, self._dirty_groups, self._all_dirty = set(), set(), False
        writes: list[LoadBalancerStatus] = []
        waits: list[float] = []
        stats_due: list[float] = []
        for lb in todo:
            if lb.deleting:
                continue
            group = where.get(lb.id)
            if group is None and lb.id not in self._unplaced and (self._place_all or lb.id in self._place_dirty):
                # Not looked at by the placement pass yet (it came while this
                # pass ran): judging it now would say no group can take it,
                # an ERROR the API shows at once. That pass marks it again.
                continue
            placed, needed = placed_all[group][lb.id] if group else (None, 0)
            since = self._on_its_way(group, needed, now) if group else None
            if since is not None:
                # Judged once the pushes bringing it answer (they kick a
                # pass), or after status_wait, whichever comes first.
                self._dirty_lbs.add(lb.id)
                waits.append(since)
                continue
            # The revision of its rules: the first group generation holding them.
            reason, refused = self._refusal(lb, placed)
            doc = self._group_docs().get(group) if group else None
            epoch = group_epoch(group, doc[0]) if group and doc else ""
            placement = Placement(group, placed.generation if placed else 0, needed, reason, refused, epoch)
            prev = self.statuses.get(lb.id)
            if prev is None and reason is None and not self._reached(group, needed, epoch):
                # New, and no node has its rules yet: nothing to tell (compute
                # would find generation 0 observed and no error), unwritten.
                continue
            new = compute(lb, placement, self._reports(group, lb.id), prev)
            self.judged += 1
            if prev is None and new.observed_generation == 0 and new.error is None:
                continue  # nothing to tell yet: the API shows PENDING_CREATE either way
            last = self._stats_written.get(lb.id, 0)
            recently = now - last < self.settings.stats_interval
            if prev is not None and same_but_stats(prev, new) and (prev.stats == new.stats or recently):
                if prev.stats != new.stats:
                    # Counters that moved within stats_interval of the last
                    # write: written once it has passed. No later poll need
                    # bring them again (a poll carries only counters that
                    # moved since), so the pass is scheduled here.
                    self._dirty_lbs.add(lb.id)
                    stats_due.append(last + self.settings.stats_interval)
                continue
            writes.append(new)
            self._stats_written[lb.id] = now
            if (
                prev is None
                or prev.provisioning_status != new.provisioning_status
                or (prev.observed_generation != new.observed_generation)
            ):
                log.info(
                    "load balancer %s: generation %d observed, %s/%s",
                    lb.id,
                    new.observed_generation,
                    new.provisioning_status,
                    new.operating_status,
                )
        wakes = [w + self.settings.status_wait for w in waits] + stats_due
        if wakes:
            asyncio.get_running_loop().call_later(max(min(wakes) - now, 0.0), self._kick.set)
        # Together (one store transaction for many: a burst of creates
        # brings tens of statuses per pass), each into our copy at once: the
        # next pass compares with it, and the watch's copy of the same
        # write is then not parsed again.
        if writes:
            await self.statuses.put_many([(st.id, st, dump(st), None) for st in writes])

    def _reached(self, group: str | None, needed: int, epoch: str) -> bool:
        """Whether a live node of the group holds generation `needed` of the epoch."""
        doc = self._group_docs().get(group) if group else None
        if doc is None or not needed:
            return False
        live = self._live()
        for name in doc[0].lbns:
            node = self.nodes.get(name)
            st = node.state if node is not None else None
            if name in live and st is not None and st.epoch == epoch and st.generation >= needed:
                return True
        return False

    def _on_its_way(self, group: str, needed: int, now: float) -> float | None:
        """Since when a push bringing rules of revision `needed` to a node of
        the group is on its way (for less than status_wait), or None."""
        doc = self._group_docs().get(group)
        if doc is None or not needed:
            return None
        for name in doc[0].lbns:
            node = self.nodes.get(name)
            if node is None or node.in_flight is None:
                continue
            since, target = node.in_flight
            if now - since >= self.settings.status_wait or target.generation < needed:
                continue
            st = node.state
            if st is None or st.epoch != target.epoch or st.generation < needed:
                return since
        return None

    def _refusal(self, lb: LoadBalancer, placed: PlacedLoadBalancer | None) -> tuple[str | None, frozenset[str]]:
        """Why (part of) a load balancer is not placed, derived from the group
        documents alone so that it survives an operator restart."""
        if placed is None:
            why = self._unplaced.get(lb.id)
            if why is not None:
                return why, frozenset()
            if lb.lbn_group is not None:
                return f"LB node group {lb.lbn_group!r} cannot take it (no live node, or full)", frozenset()
            return "no group of LB nodes can take it (none registered, or all full)", frozenset()
        if placed.generation != lb.generation:
            return None, frozenset()
        if placed.refused is not None:
            return placed.refused, frozenset()
        have = {s.id for s in placed.services}
        reasons, refused = [], set()
        for s in self.compiled(lb):
            if s.id in have:
                continue
            refused.add(s.id.split("/", 1)[1])
            reasons.append(
                f"{s.vip}:{s.port}/{s.protocol} on {s.segment.type} {s.segment.id} is already served by "
                f"load balancer {self._owner(service_key(s)) or '?'}"
            )
        return "; ".join(reasons) or None, frozenset(refused)

    async def _finish_deletions(self) -> None:
        where = self._placement_index()
        groups = self._group_docs()
        live = self._live()
        for lb_id in sorted(self._deleting):
            got = self.lbs.entry(lb_id)
            if got is None or not got[0].deleting:
                self._deleting.discard(lb_id)
                continue
            lb, rev = got
            key = keys.lb_key(lb_id)
            if lb.id in where:
                continue
            group, needed = self._removed.get(lb.id, (None, 0))
            if group is not None and group in groups:
                needed = needed or self._generation(group)
                pending = [
                    n
                    for n in groups[group][0].lbns
                    if n in live
                    and (self.nodes.get(n) is None or (self.nodes[n].state or AgentState(name=n)).generation < needed)
                ]
                if pending:
                    continue
            with contextlib.suppress(Conflict):
                await self.store.delete(key, expect=rev)
                await self.store.delete(keys.status_key(lb.id))
                self._removed.pop(lb.id, None)
                self._deleting.discard(lb.id)
                self._stats_written.pop(lb.id, None)
                self.compiled.forget(lb.id)
                log.info("load balancer %s deleted", lb.id)
