"""The LB nodes: each kept at the generation its group must reach.

A group's target is its rules at its generation (the highest store revision
under the group) in its epoch (the group's uid). A node whose holding the
operator knows (it answered the last push, or reports the target's very
generation) gets a delta: the services of the load balancers whose rules
changed since, and nothing else. A node new, restarted, behind in a way the
operator cannot tell, or of another epoch, gets the full state; so does one
that refuses a delta (its base is not what it holds). One worker per node,
so a slow or dead node delays nobody else; a node is polled for its state
(counters, restarts, health) at every resync and when its record says a
backend it checks went up or down: for what changed since its last answer
only (agent/reports.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from xdsr.model.agent import AgentState, DesiredState, ServiceReport, owner
from xdsr.model.group import LbnRecord
from xdsr.operator import metrics
from xdsr.operator.agents import AgentError
from xdsr.operator.view import Node, Target, View, group_epoch

log = logging.getLogger("xdsr.operator")


class NodeDriver(View):
    def _lbn_changed(self, name: str, _old: object, record: object) -> None:
        assert record is None or isinstance(record, LbnRecord)
        # A node came or went: its groups' statuses change, and what fits where.
        self._all_dirty = self._place_all = True
        node = self.nodes.get(name)
        if record is not None and (node is None or node.record is None or node.record.started_at != record.started_at):
            # A new or restarted node: it knows nothing until told.
            log.info("LB node %s (re)appeared at %s", name, record.endpoint)
            node = self.nodes.setdefault(name, Node(name))
            node.state = None
            node.error = None
            node.acked = None
            node.by_lb = {}
            node.reports_at = None
        elif (
            record is not None
            and node is not None
            and node.record is not None
            and node.record.health_epoch != record.health_epoch
        ):
            node.poll = True  # a backend it checks went up or down
        if node is not None:
            node.record = record
            node.kick.set()
        self._kick.set()

    def _node_changed(self, node: Node, lbs: set[str] | None = None) -> None:
        """Statuses to compute again: those of `lbs`, or (None) of every load
        balancer of the node's group."""
        if lbs is not None:
            self._dirty_lbs |= lbs
        else:
            for g, (doc, _) in self._group_docs().items():
                if node.name in doc.lbns:
                    self._dirty_groups.add(g)
        self._kick.set()

    def _push_all(self) -> None:
        live = self._live()
        placed_all = self._placed()
        for g, (doc, _) in self._group_docs().items():
            placed = placed_all.get(g, {})
            generation, epoch = self._generation(g, placed), group_epoch(g, doc)
            target: Target | None = None
            for name in doc.lbns:
                node = self.nodes.get(name)
                if node is None or name not in live:
                    continue
                w = node.wanted
                if w is None or w.generation != generation or w.epoch != epoch:
                    target = target or self._target(g, epoch, generation, placed)
                    node.wanted = target
                    node.kick.set()

    @staticmethod
    def _at(node: Node, target: Target) -> bool:
        st = node.state
        return st is not None and st.generation == target.generation and st.epoch == target.epoch

    def _take_reports(self, node: Node, state: AgentState, lbs: set[str] | None) -> set[str] | None:
        """Keep what the node reports: all of it, or (a delta's answer) the
        load balancers it named. Returns the load balancers whose reports
        changed (None: maybe any)."""
        fresh: dict[str, list[ServiceReport]] = {}
        for r in state.services:
            fresh.setdefault(owner(r.id), []).append(r)
        if not state.partial:
            # Every report, as of this point of the node's report sequence.
            node.reports_at = (state.instance, state.seq) if state.instance else None
            node.full_read_at = time.monotonic()
            old, node.by_lb = node.by_lb, fresh
            return {lb for lb in old.keys() | fresh.keys() if old.get(lb) != fresh.get(lb)}
        changed = set()
        for lb in lbs or ():
            new = fresh.get(lb)
            if node.by_lb.get(lb) != new:
                changed.add(lb)
            if new is not None:
                node.by_lb[lb] = new
            else:
                node.by_lb.pop(lb, None)
        return changed | self._take_counters(node, state.counters)

    @staticmethod
    def _take_counters(node: Node, counters: dict[str, tuple[int, int]]) -> set[str]:
        """A poll's counters of services whose reports are otherwise the
        same: into the reports kept; the load balancers they belong to."""
        by_lb: dict[str, dict[str, tuple[int, int]]] = {}
        for sid, c in counters.items():
            by_lb.setdefault(owner(sid), {})[sid] = c
        for lb, mine in by_lb.items():
            reports = node.by_lb.get(lb)
            if reports is not None:
                node.by_lb[lb] = [
                    r if (c := mine.get(r.id)) is None else r.model_copy(update={"packets": c[0], "bytes": c[1]})
                    for r in reports
                ]
        return set(by_lb)

    async def _gather(self, node: Node) -> None:
        """While changes keep coming, until push_interval has passed since the
        node's last delta; as soon as none came for push_quiet. A node's cost
        per push is largely fixed (a request, an apply and its flip, the
        Maglev tables of the push built side by side: 20 tables of 10
        members cost about 0.5 ms each, 100 about 0.3 ms), so a burst of
        creates is sent in few, large pushes."""
        deadline = node.pushed_at + self.settings.push_interval
        while (left := deadline - time.monotonic()) > 0:
            node.kick.clear()
            try:
                async with asyncio.timeout(min(left, self.settings.push_quiet)):
                    await node.kick.wait()
            except TimeoutError:
                if left > self.settings.push_quiet:
                    return  # quiet: nothing more is coming for now

    async def _node_worker(self, node: Node) -> None:
        """Keep one node at the generation it should have; one push at a time."""
        paced: float | None = None  # since when the next push has gathered changes (see _gather)
        while True:
            if paced is None:
                await node.kick.wait()
            node.kick.clear()
            since, paced = paced, None
            node.in_flight = None
            wanted, rec = node.wanted, node.record
            if node.poll:
                node.poll = False
                await self._read_state(node)
            if wanted is None or rec is None:
                continue
            if self._at(node, wanted) and node.error is None:
                if node.acked is None:
                    node.acked = wanted.revisions()
                continue
            state = node.state
            if node.acked is not None and state is not None and state.epoch == wanted.epoch:
                desired, lbs = wanted.delta(state.generation, node.acked)
                if len(lbs) > 1 and since is None and time.monotonic() - node.pushed_at < self.settings.push_interval:
                    # Changes piled up since the last push, which was recent:
                    # a burst. This push carries what comes meanwhile too. Its
                    # statuses wait for it as for a push on its way (writeback.py).
                    paced = time.monotonic()
                    node.in_flight = (paced, wanted)
                    await self._gather(node)
                    continue
                node.pushed_at = time.monotonic()
            else:
                desired, lbs = wanted.full(), None
            error_before = node.error
            node.in_flight = (since or time.monotonic(), wanted)
            try:
                t0 = time.perf_counter()
                got, sent = await self.agents.push(rec.endpoint, desired)
                metrics.pushed(node.name)
            except AgentError as exc:
                node.in_flight = None
                node.error = str(exc)
                metrics.push_failed(node.name)
                self._node_changed(node)
                culprits = self._culprits(exc, desired, wanted)
                if culprits:
                    # Those load balancers' rules come off the group (the
                    # placement pass writes why): the next target leaves
                    # them out, and the node gets everything else.
                    log.warning(
                        "LB node %s refused the rules of load balancer(s) %s: %s",
                        node.name,
                        ", ".join(sorted(culprits)),
                        exc,
                    )
                    metrics.refused(node.name, len(culprits))
                    for lb_id, why in culprits.items():
                        self._node_refusals[lb_id] = (wanted.placed[lb_id][0].generation, why)
                        self._place_dirty.add(lb_id)
                    # No retry of the same push: the next target (without
                    # them) kicks this worker, else the next poll does.
                    self._kick.set()
                    continue
                node.failures += 1
                delay = self._backoff(node.failures)
                metrics.push_backoff(node.name, delay)
                log.warning(
                    "push to LB node %s failed (%d in a row), next try in %.1f s: %s",
                    node.name,
                    node.failures,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                node.kick.set()
                continue
            node.in_flight = None
            if node.failures:
                node.failures = 0
                metrics.push_backoff(node.name, 0.0)
            node.answers += 1
            node.bytes_sent += sent
            node.last_contact = time.monotonic()
            if lbs is None:
                node.full_pushes += 1
            else:
                node.delta_pushes += 1
            node.state = got
            if got.generation == wanted.generation and got.epoch == wanted.epoch:
                node.acked = wanted.revisions()
                node.error = None
                changed = self._take_reports(node, got, lbs)
                log.info(
                    "LB node %s at generation %d: %s of %d load balancers in %.1f ms (%d bytes)",
                    node.name,
                    got.generation,
                    "full state" if lbs is None else f"delta, {len(lbs)}",
                    len(wanted.placed),
                    (time.perf_counter() - t0) * 1000,
                    sent,
                )
                # Only the load balancers the delta carried changed on the
                # node, unless it was in error before.
                self._node_changed(node, lbs if lbs is not None and error_before is None else None)
                del changed
                continue
            # Not at the target: a delta refused (its base is not what the
            # node holds: it restarted, or missed a push), or a full state
            # refused (the node is past it).
            node.acked = None
            if not got.partial:
                self._take_reports(node, got, None)
            if lbs is not None:
                log.info(
                    "LB node %s refused a delta from %d (it holds %s:%d): sending the full state",
                    node.name,
                    desired.base or 0,
                    got.epoch or "-",
                    got.generation,
                )
                node.kick.set()
            elif got.generation > wanted.generation and got.epoch == wanted.epoch:
                # Past anything this operator sent in this epoch: a state
                # pushed by someone else. Its content is unknown (the status
                # judges it by what it reports); it takes the group's state
                # again once the group's generation passes it.
                node.error = (
                    f"holds generation {got.generation} of epoch {got.epoch}, past the group's "
                    f"{wanted.generation}: not a state this operator sent"
                )
            else:
                node.error = got.error if got.generation < wanted.generation else None
            self._node_changed(node)

    def _backoff(self, failures: int) -> float:
        """Seconds before the next push to a node that failed `failures`
        times in a row: doubling from settings.retry up to settings.retry_max,
        with full jitter in its upper half so that nodes that failed together
        (a network blip) do not come back together."""
        ceiling = min(self.settings.retry_max, self.settings.retry * 2 ** min(failures - 1, 32))
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _culprits(exc: AgentError, desired: DesiredState, wanted: Target) -> dict[str, str]:
        """The load balancers whose rules made the node refuse a push (lb
        id -> why), when it can tell: the fields its errors name (a refused
        state names each bad service: services[i]... in a full state,
        changes.<lb id>[j]... in a delta), or the one load balancer the push
        carried. {} when the failure is not theirs to carry (unreachable,
        or an error that names none of several)."""
        if exc.status not in (422, 500):
            return {}
        found: dict[str, list[str]] = {}
        for field, message in exc.errors:
            lb_id = None
            if field.startswith("changes."):
                lb_id = field.removeprefix("changes.").split("[", 1)[0]
            elif field.startswith("services["):
                head = field.removeprefix("services[").split("]", 1)[0]
                if head.isdigit() and int(head) < len(desired.services):
                    lb_id = owner(desired.services[int(head)].id)
            if lb_id in wanted.placed:
                found.setdefault(lb_id, []).append(f"{field}: {message}")
        if not found:
            carried = set(desired.changes) if desired.is_delta else {owner(s.id) for s in desired.services}
            carried &= wanted.placed.keys()
            if len(carried) != 1:
                return {}
            found = {carried.pop(): [exc.detail]}
        return {lb_id: "refused by an LB node: " + "; ".join(why) for lb_id, why in found.items()}

    async def _poll_nodes(self) -> None:
        """Fresh state (counters, restarts) from every live node."""

        async def poll(node: Node) -> None:
            if await self._read_state(node) and node.wanted is not None and not self._at(node, node.wanted):
                node.kick.set()

        live = self._live()
        await asyncio.gather(*(poll(n) for name, n in self.nodes.items() if name in live))
        self._place_all = True  # what health checks take out may have changed anywhere

    async def _read_state(self, node: Node) -> bool:
        """Ask the node what it holds now; False (and node.error) if it cannot be reached."""
        if node.record is None:
            return False
        answers = node.answers
        # Only what changed since the last answer taken (reports, and the
        # counters that moved: as fresh as a whole read), unless by_lb stands
        # nowhere in the node's sequence or a whole read is due
        # (settings.full_read). A node that cannot tell (restarted: another
        # instance) answers whole.
        since = node.reports_at
        if since is not None and time.monotonic() - node.full_read_at >= self.settings.full_read:
            since = None
        try:
            state = await self.agents.get_state(node.record.endpoint, since)
        except AgentError as exc:
            if node.error != str(exc):
                self._node_changed(node)
            node.error = str(exc)
            return False
        node.last_contact = time.monotonic()
        if node.answers != answers:
            # A push was answered while this poll was out: the node may have
            # read its state before applying that push, and taking that
            # older state would lose what the operator knows it holds (and
            # send it the full state). The push's answer is as fresh.
            return True
        lbs = None
        if state.partial:
            if since is None or state.instance != since[0] or state.changed is None:
                return True  # not what was asked: never mixed into by_lb
            lbs = set(state.changed)
            node.reports_at = (state.instance, state.seq)
        metrics.polled(node.name, not state.partial, len(state.services) + len(state.counters))
        before = node.state
        node.state = state
        if before is None or (before.generation, before.epoch, before.error) != (
            state.generation,
            state.epoch,
            state.error,
        ):
            node.acked = None if before is None or before.generation != state.generation else node.acked
            self._take_reports(node, state, lbs)
            self._node_changed(node)
        else:
            # Counters and health: only the load balancers whose reports moved.
            self._node_changed(node, self._take_reports(node, state, lbs))
        return True
