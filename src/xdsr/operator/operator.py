"""The operator's reconcile loop.

It watches the store (load balancers, LB node registrations, groups) and
drives everything toward the intent, level-triggered: each pass looks at the
whole state, so a missed event or a restart costs nothing but a pass.

1. Membership: every registered LB node belongs to a group (3 per group by
   default); a node that asked for a group joins it.
2. Placement: a new load balancer goes to the group with the fewest; its
   compiled rules go under the group's prefix (keys.rules_key: with the group
   document, the paper's one resource per LBN group), each written with
   compare-and-swap, table sizes kept across member changes (compile.sized).
3. Push: every node of a group gets the union of the group's rules, tagged
   with the highest store revision under the group as generation. One worker
   per node, so a slow or dead node delays nobody else.
4. Status: from what the nodes answer, per load balancer, written back.
5. Deletion: a deleted load balancer leaves its group; once every node has
   applied that, its documents go.

If the operator stops, the nodes keep forwarding what they have; when it
returns it re-lists, re-pushes (idempotent on the nodes) and converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

from xdsr.model import keys
from xdsr.model.agent import AgentState, DesiredState, RuleService, ServiceReport
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.operator.agents import AgentClient, AgentError
from xdsr.operator.compile import Compiled, ServiceKey, service_key, sized, without
from xdsr.operator.status import NodeReport, Placement, compute, judge_health, same_but_stats
from xdsr.store.base import Conflict, Store, StoreError
from xdsr.store.docs import dump, update_doc
from xdsr.store.informer import Informer

log = logging.getLogger("xdsr.operator")


@dataclass
class Node:
    """The operator's view of one LB node."""

    name: str
    record: LbnRecord | None = None
    state: AgentState | None = None
    error: str | None = None
    wanted: DesiredState | None = None
    last_contact: float = 0.0
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    poll: bool = False  # read its state at the next kick (a backend it checks went up or down)


@dataclass
class Settings:
    group_size: int = 3
    resync: float = 10.0  # seconds between full passes and node polls without events
    stats_interval: float = 5.0  # at most this often a status is rewritten only for counters
    retry: float = 1.0  # delay before pushing again to a node that failed


class Operator:
    def __init__(self, store: Store, token: str, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.agents = AgentClient(token)
        self._kick = asyncio.Event()
        kick = lambda *_: self._kick.set()  # noqa: E731
        self.lbs = Informer(store, keys.LB_PREFIX, LoadBalancer, on_change=self._lb_changed)
        self.statuses = Informer(store, keys.STATUS_PREFIX, LoadBalancerStatus)
        self.groups = Informer(store, keys.GROUP_PREFIX, Group, on_change=kick)
        self.rules = Informer(store, keys.RULES_PREFIX, PlacedLoadBalancer, on_change=kick)
        self.lbns = Informer(store, keys.LBN_PREFIX, LbnRecord, on_change=self._lbn_changed)
        self.nodes: dict[str, Node] = {}
        # Group generation holding each load balancer's latest change, and
        # the one from which a deleted load balancer is gone. Unknown after a
        # restart: then the group's current generation is used (conservative).
        self._needed: dict[str, int] = {}
        self._removed: dict[str, tuple[str, int]] = {}
        self._stats_written: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.passes = 0
        self.compiled = Compiled()
        # Whose status may have changed since the last pass: a status is a
        # function of its load balancer and its group's nodes, so only those
        # are computed again (everything, after a node poll).
        self._dirty_lbs: set[str] = set()
        self._dirty_groups: set[str] = set()
        self._all_dirty = True
        self._report_index: dict[str, tuple[AgentState, dict[str, list[ServiceReport]]]] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        for inf in self._informers():
            inf.start()
        self._tasks.append(asyncio.create_task(self._loop(), name="reconcile"))

    async def stop(self) -> None:
        tasks = self._tasks + [n.task for n in self.nodes.values() if n.task]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for inf in self._informers():
            await inf.stop()
        await self.agents.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    def _lb_changed(self, name: str, _old: object, _new: object) -> None:
        self._dirty_lbs.add(name)
        self._kick.set()

    def _node_changed(self, node: Node) -> None:
        for g, (doc, _) in self._group_docs().items():
            if node.name in doc.lbns:
                self._dirty_groups.add(g)
        self._kick.set()

    def _lbn_changed(self, name: str, _old: object, record: object) -> None:
        assert record is None or isinstance(record, LbnRecord)
        self._all_dirty = True  # a node came or went: its groups' statuses change
        node = self.nodes.get(name)
        if record is not None and (node is None or node.record is None or node.record.started_at != record.started_at):
            # A new or restarted node: it knows nothing until told.
            log.info("LB node %s (re)appeared at %s", name, record.endpoint)
            node = self.nodes.setdefault(name, Node(name))
            node.state = None
            node.error = None
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

    def _informers(self) -> tuple[Informer, ...]:  # type: ignore[type-arg]
        return (self.lbs, self.statuses, self.groups, self.rules, self.lbns)

    async def _loop(self) -> None:
        for inf in self._informers():
            while not await inf.wait_synced(60):
                log.warning("waiting for the store (%s)", inf.prefix)
        next_poll = 0.0
        while True:
            try:
                if time.monotonic() >= next_poll:
                    await self._poll_nodes()
                    next_poll = time.monotonic() + self.settings.resync
                self._kick.clear()
                await self.reconcile()
            except (StoreError, Conflict) as exc:
                self._all_dirty = True  # the pass may have consumed changes it did not finish
                log.warning("reconcile pass failed, retrying: %s", exc)
                await asyncio.sleep(self.settings.retry)
                continue
            except Exception:
                self._all_dirty = True
                log.exception("reconcile pass failed")
                await asyncio.sleep(self.settings.retry)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=max(0.0, next_poll - time.monotonic()))

    # -- one pass ----------------------------------------------------------------

    def _group_docs(self) -> dict[str, tuple[Group, int]]:
        return self.groups.entries()

    def _placed(self) -> dict[str, dict[str, tuple[PlacedLoadBalancer, int]]]:
        """group -> lb id -> (its rules, revision)."""
        out: dict[str, dict[str, tuple[PlacedLoadBalancer, int]]] = {}
        for name, value in self.rules.entries().items():
            group, lb_id = name.split("/", 1)
            out.setdefault(group, {})[lb_id] = value
        return out

    def _generation(self, group: str, placed: dict[str, tuple[PlacedLoadBalancer, int]] | None = None) -> int:
        """What the group's nodes must reach: the latest change to the group
        or any of its rules (a deletion bumps the group document)."""
        doc = self._group_docs().get(group)
        revs = [rev for _, rev in (placed if placed is not None else self._placed().get(group, {})).values()]
        return max([doc[1] if doc else 0, *revs])

    def _live(self) -> dict[str, LbnRecord]:
        return {name: rec for name, (rec, _) in self.lbns.entries().items()}

    async def reconcile(self) -> None:
        self.passes += 1
        live = self._live()
        for name, rec in live.items():
            node = self.nodes.setdefault(name, Node(name))
            node.record = rec
            if node.task is None or node.task.done():
                node.task = asyncio.create_task(self._node_worker(node), name=f"push {name}")
        await self._assign_groups(live)
        await self._place()
        self._push_all()
        await self._write_statuses()
        await self._finish_deletions()

    async def _assign_groups(self, live: dict[str, LbnRecord]) -> None:
        groups = self._group_docs()
        member_of = {n: g for g, (doc, _) in groups.items() for n in doc.lbns}
        for name in sorted(live):
            if name in member_of:
                continue
            wanted = live[name].group
            if wanted is None:
                open_groups = sorted(g for g, (doc, _) in groups.items() if len(doc.lbns) < self.settings.group_size)
                if open_groups:
                    wanted = open_groups[0]
                else:
                    n = 1
                    while f"g{n}" in groups:
                        n += 1
                    wanted = f"g{n}"

            def join(doc: Group | None, gname: str = wanted, node: str = name) -> Group:
                doc = doc or Group(name=gname)
                if node in doc.lbns:
                    return doc
                return doc.model_copy(update={"lbns": [*doc.lbns, node]})

            doc, rev = await update_doc(self.store, keys.group_key(wanted), Group, join)
            assert doc is not None
            groups[wanted] = (doc, rev)
            member_of[name] = wanted
            log.info("LB node %s joined group %s", name, wanted)

    def _placement_index(self) -> dict[str, str]:
        return {lb: g for g, lbs in self._placed().items() for lb in lbs}

    def _choose_group(
        self, load: dict[str, int], capacity: dict[str, int], needs: int, wanted: str | None = None
    ) -> str | None:
        live = self._live()
        candidates = []
        for g, (doc, _) in self._group_docs().items():
            if wanted is not None and g != wanted:
                continue
            members = [n for n in doc.lbns if n in live]
            if not members:
                continue
            if load.get(g, 0) + needs > capacity[g]:
                continue
            candidates.append((load.get(g, 0), g))
        return min(candidates)[1] if candidates else None

    async def _place(self) -> None:
        """Bring every group's rules in line with the load balancers."""
        groups = self._group_docs()
        placed_all = self._placed()
        where = self._placement_index()
        live = self._live()
        load = {g: sum(len(p.services) for p, _ in lbs.values()) for g, lbs in placed_all.items()}
        capacity = {
            g: min((live[n].max_services for n in doc.lbns if n in live), default=0) for g, (doc, _) in groups.items()
        }
        # Every service key served anywhere, by the load balancer serving it:
        # two load balancers cannot share a VIP, port, protocol and segment.
        owner: dict[ServiceKey, str] = {}
        for lbs in placed_all.values():
            for lb_id, (placed, _) in sorted(lbs.items()):
                for s in placed.services:
                    owner.setdefault(service_key(s), lb_id)

        writes: list[tuple[str, str, PlacedLoadBalancer | None]] = []  # (group, lb id, rules or None)
        lbs_sorted = sorted(self.lbs.values(), key=lambda lb: (lb.created_at, lb.id))
        present = {lb.id for lb in lbs_sorted}
        for lb in lbs_sorted:
            group = where.get(lb.id)
            if lb.deleting:
                if group is not None:
                    writes.append((group, lb.id, None))
                continue
            current = placed_all[group][lb.id][0] if group else None
            down = self._health_down(lb, group, current)
            if current is not None and current.generation == lb.generation and current.down == down:
                continue
            # A service another load balancer already serves is left out;
            # the status says why (see _refusal).
            services = [s for s in self.compiled(lb) if owner.get(service_key(s), lb.id) == lb.id]
            services = sized(services, current.services if current is not None else None)
            services = without(services, down)
            if group is None:
                group = self._choose_group(load, capacity, len(services), lb.lbn_group)
                if group is None:
                    continue
                load[group] = load.get(group, 0) + len(services)
            for s in services:
                owner[service_key(s)] = lb.id
            writes.append(
                (
                    group,
                    lb.id,
                    PlacedLoadBalancer(
                        generation=lb.generation, project_id=lb.project_id, services=services, down=down
                    ),
                )
            )
        # Load balancers whose documents are gone (deleted by hand) leave too.
        for lb_id, g in where.items():
            if lb_id not in present:
                writes.append((g, lb_id, None))

        deleted_from: set[str] = set()
        last_rule = last_group = 0
        known = self.rules.entries()

        async def write(g: str, lb_id: str, rules: PlacedLoadBalancer | None) -> None:
            nonlocal last_rule
            self._dirty_lbs.add(lb_id)
            key = keys.rules_key(g, lb_id)
            got = known.get(f"{g}/{lb_id}")
            expect = got[1] if got else 0
            try:
                if rules is None:
                    last_rule = max(last_rule, await self.store.delete(key, expect=expect))
                    deleted_from.add(g)
                else:
                    rev = await self.store.put(key, dump(rules), expect=expect)
                    # Into our own copy at once (read-your-writes), rather than
                    # waiting for the watch to bring it back: pushes go out now.
                    self.rules.apply_local(f"{g}/{lb_id}", rules, rev)
                    self._needed[lb_id] = rev
            except Conflict:
                # Someone else wrote it (another operator?): the next pass
                # sees their version and decides again.
                self._kick.set()

        await self._concurrently(write(*w) for w in writes)
        # A deletion must raise the group's generation too: bump the group.
        for g in sorted(deleted_from):

            def bump(doc: Group | None, g: str = g) -> Group:
                doc = doc or Group(name=g)
                return doc.model_copy(update={"epoch": doc.epoch + 1})

            doc, last_group = await update_doc(self.store, keys.group_key(g), Group, bump)
            assert doc is not None
            self.groups.apply_local(g, doc, last_group)
            for gg, lb_id, rules in writes:
                if gg == g and rules is None:
                    self._removed[lb_id] = (g, last_group)
                    self._needed.pop(lb_id, None)
        # A deletion is not in our copy until the watch brings it: wait for
        # that, so the pushes below do not carry the deleted rules.
        if last_rule:
            await self.rules.wait_for(last_rule)
        if writes:
            log.debug("placed: %d rule changes in %d groups", len(writes), len({g for g, _, _ in writes}))

    def _health_down(
        self, lb: LoadBalancer, group: str | None, current: PlacedLoadBalancer | None
    ) -> dict[str, list[str]]:
        """Members to take out of the tables, per service id: those most of
        the group's nodes find down. If that is every weighted member of a
        service, none: a check that fails everywhere at once more likely
        says the checks cannot get through (a firewall, a wrong port) than
        that every backend died, and sending traffic costs nothing more than
        dropping it (the status shows them ERROR either way)."""
        if not lb.healthmonitors and not (current is not None and current.down):
            return {}
        health = judge_health(lb.id, self._reports(group, lb.id))
        out = {}
        for s in self.compiled(lb):
            gone = health.down.get(s.id, frozenset())
            weighted = {b.id for b in s.backends if b.weight > 0}
            if s.health is None or not gone & weighted or weighted <= gone:
                continue
            out[s.id] = sorted(gone & weighted)
        return out

    # -- pushing to nodes --------------------------------------------------------

    def _push_all(self) -> None:
        live = self._live()
        placed_all = self._placed()
        for g, (doc, _) in self._group_docs().items():
            placed = placed_all.get(g, {})
            services: list[RuleService] = [
                s for p, _ in sorted(placed.values(), key=lambda x: x[1]) for s in p.services
            ]
            wanted = DesiredState(generation=self._generation(g, placed), services=services)
            for name in doc.lbns:
                node = self.nodes.get(name)
                if node is None or name not in live:
                    continue
                if node.wanted is None or node.wanted.generation != wanted.generation:
                    node.wanted = wanted
                    node.kick.set()

    async def _node_worker(self, node: Node) -> None:
        """Keep one node at the generation it should have; one push at a time."""
        while True:
            await node.kick.wait()
            node.kick.clear()
            wanted, rec = node.wanted, node.record
            if node.poll:
                node.poll = False
                await self._read_state(node)
                self._node_changed(node)
            if wanted is None or rec is None:
                continue
            if node.state is not None and node.state.generation == wanted.generation and node.error is None:
                continue
            try:
                t0 = time.perf_counter()
                node.state = await self.agents.put_state(rec.endpoint, wanted)
                node.error = node.state.error if node.state.generation < wanted.generation else None
                node.last_contact = time.monotonic()
                log.info(
                    "LB node %s at generation %d (%d services) in %.1f ms",
                    node.name,
                    node.state.generation,
                    len(wanted.services),
                    (time.perf_counter() - t0) * 1000,
                )
            except AgentError as exc:
                node.error = str(exc)
                log.warning("push to LB node %s failed: %s", node.name, exc)
                self._node_changed(node)
                await asyncio.sleep(self.settings.retry)
                node.kick.set()
                continue
            self._node_changed(node)

    async def _poll_nodes(self) -> None:
        """Fresh state (counters, restarts) from every live node."""

        async def poll(node: Node) -> None:
            if await self._read_state(node) and node.wanted is not None:
                assert node.state is not None
                if node.state.generation != node.wanted.generation:
                    node.kick.set()

        live = self._live()
        await asyncio.gather(*(poll(n) for name, n in self.nodes.items() if name in live))
        self._all_dirty = True

    async def _read_state(self, node: Node) -> bool:
        """Ask the node what it holds now; False (and node.error) if it cannot be reached."""
        if node.record is None:
            return False
        try:
            node.state = await self.agents.get_state(node.record.endpoint)
        except AgentError as exc:
            node.error = str(exc)
            return False
        node.last_contact = time.monotonic()
        return True

    # -- status and deletion -----------------------------------------------------

    def _reports(self, group: str | None, lb_id: str) -> list[NodeReport]:
        """What each node of the group says, narrowed to one load balancer's
        services: a node reports every service of its group, and scanning
        them all for each load balancer would make a pass quadratic (18 s
        for 4096 load balancers on one group)."""
        if group is None:
            return []
        doc = self._group_docs().get(group)
        if doc is None:
            return []
        live = self._live()
        out = []
        for name in doc[0].lbns:
            node = self.nodes.get(name)
            state = node.state if node else None
            if node is not None and state is not None:
                mine = self._by_lb(node, state).get(lb_id, [])
                state = state.model_copy(update={"services": mine})
            out.append(NodeReport(name, name in live, state, node.error if node else None))
        return out

    def _by_lb(self, node: Node, state: AgentState) -> dict[str, list[ServiceReport]]:
        """The node's service reports by load balancer id, built once per state."""
        cached = self._report_index.get(node.name)
        if cached is not None and cached[0] is state:
            return cached[1]
        index: dict[str, list[ServiceReport]] = {}
        for r in state.services:
            index.setdefault(r.id.split("/", 1)[0], []).append(r)
        self._report_index[node.name] = (state, index)
        return index

    async def _write_statuses(self) -> None:
        where = self._placement_index()
        now = time.monotonic()
        placed_all = self._placed()
        owner = {
            service_key(s): lb_id
            for lbs in placed_all.values()
            for lb_id, (placed, _) in lbs.items()
            for s in placed.services
        }
        if self._all_dirty:
            todo = self.lbs.values()
        else:
            ids = self._dirty_lbs | {lb_id for g in self._dirty_groups for lb_id in placed_all.get(g, {})}
            todo = [lb for lb in (self.lbs.get(i) for i in ids) if lb is not None]
        self._dirty_lbs, self._dirty_groups, self._all_dirty = set(), set(), False
        writes: list[Awaitable[int]] = []
        for lb in todo:
            if lb.deleting:
                continue
            group = where.get(lb.id)
            placed = placed_all[group][lb.id][0] if group else None
            needed = self._needed.get(lb.id) or (self._generation(group) if group else 0)
            reason, refused = self._refusal(lb, placed, owner)
            placement = Placement(group, placed.generation if placed else 0, needed, reason, refused)
            prev = self.statuses.get(lb.id)
            new = compute(lb, placement, self._reports(group, lb.id), prev)
            if prev is None and new.observed_generation == 0 and new.error is None:
                continue  # nothing to tell yet: the API shows PENDING_CREATE either way
            recently = now - self._stats_written.get(lb.id, 0) < self.settings.stats_interval
            if prev is not None and same_but_stats(prev, new) and (prev.stats == new.stats or recently):
                continue
            writes.append(self.store.put(keys.status_key(lb.id), dump(new)))
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
        await self._concurrently(writes)

    async def _concurrently(self, writes: Iterable[Awaitable[object]], limit: int = 32) -> None:
        """Store writes in flight together: etcd commits concurrent writes
        with one disk sync, so many statuses cost about what one does."""
        sem = asyncio.Semaphore(limit)

        async def one(w: Awaitable[object]) -> None:
            async with sem:
                await w

        await asyncio.gather(*(one(w) for w in writes))

    def _applied(self, name: str) -> int:
        node = self.nodes.get(name)
        return node.state.generation if node is not None and node.state is not None else 0

    def _refusal(
        self, lb: LoadBalancer, placed: PlacedLoadBalancer | None, owner: dict[ServiceKey, str]
    ) -> tuple[str | None, frozenset[str]]:
        """Why (part of) a load balancer is not placed, derived from the group
        documents alone so that it survives an operator restart."""
        if placed is None:
            if lb.lbn_group is not None:
                return f"LB node group {lb.lbn_group!r} cannot take it (no live node, or full)", frozenset()
            return "no group of LB nodes can take it (none registered, or all full)", frozenset()
        if placed.generation != lb.generation:
            return None, frozenset()
        have = {s.id for s in placed.services}
        reasons, refused = [], set()
        for s in self.compiled(lb):
            if s.id in have:
                continue
            refused.add(s.id.split("/", 1)[1])
            reasons.append(
                f"{s.vip}:{s.port}/{s.protocol} on {s.segment.type} {s.segment.id} is already served by "
                f"load balancer {owner.get(service_key(s), '?')}"
            )
        return "; ".join(reasons) or None, frozenset(refused)

    async def _finish_deletions(self) -> None:
        where = self._placement_index()
        groups = self._group_docs()
        live = self._live()
        for lb_id, (lb, rev) in self.lbs.entries().items():
            key = keys.lb_key(lb_id)
            if not lb.deleting or lb.id in where:
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
                self._stats_written.pop(lb.id, None)
                self.compiled.forget(lb.id)
                log.info("load balancer %s deleted", lb.id)
