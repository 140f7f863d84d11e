"""The placement pass: LB nodes into groups, load balancers onto groups.

Every registered LB node belongs to a group (settings.group_size per group);
a node that asked for a group joins it. A new load balancer goes to the
group with the fewest services that has room; its compiled rules go under
the group's prefix (keys.rules_key), each written with compare-and-swap,
table sizes kept across member changes (compile.sized), members the group's
health checks find down at weight 0.
"""

from __future__ import annotations

import logging
import uuid

from xdsr.dataplane import services as svc_checks
from xdsr.model import keys
from xdsr.model.agent import RuleService
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer
from xdsr.operator import capacity as cap
from xdsr.operator.capacity import ZERO, Cost, add, cost, sub
from xdsr.operator.compile import ServiceKey, service_key, sized, without
from xdsr.operator.status import judge_health
from xdsr.operator.view import View
from xdsr.store.base import Conflict
from xdsr.store.docs import dump, update_doc

log = logging.getLogger("xdsr.operator")


def _table(s: RuleService | None) -> object:
    """What a service's table is made of: equal, the node keeps the table."""
    return None if s is None else (s.table_size, [(b.id, b.mac, b.vlan, b.weight) for b in s.backends])


def _invalid(services: list[RuleService], known: svc_checks.Known | None = None) -> str | None:
    """The nodes' own checks (dataplane/services.py), run before anything
    is pushed: a load balancer they would refuse is refused here alone.
    known: members that passed them before, not checked again."""
    errors = svc_checks.errors(services, known)
    return "refused: " + "; ".join(map(str, errors)) if errors else None


class Placer(View):
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
                doc = doc or Group(name=gname, uid=uuid.uuid4().hex)
                if node in doc.lbns:
                    return doc
                return doc.model_copy(update={"lbns": [*doc.lbns, node]})

            doc, rev = await update_doc(self.store, keys.group_key(wanted), Group, join)
            assert doc is not None
            groups[wanted] = (doc, rev)
            member_of[name] = wanted
            log.info("LB node %s joined group %s", name, wanted)

    def _choose_group(
        self, load: dict[str, Cost], capacity: dict[str, Cost], needs: Cost, wanted: str | None = None
    ) -> str | None:
        """The group with the fewest services where the load balancer fits
        (services, slot chunks and backend entries)."""
        live = self._live()
        candidates = []
        for g, (doc, _) in self._group_docs().items():
            if wanted is not None and g != wanted:
                continue
            members = [n for n in doc.lbns if n in live]
            if not members:
                continue
            if cap.short(add(load.get(g, ZERO), needs), capacity[g]):
                continue
            candidates.append((load.get(g, ZERO)[0], g))
        return min(candidates)[1] if candidates else None

    async def _place(self) -> None:
        """Bring every group's rules in line with the load balancers."""
        groups = self._group_docs()
        placed_all = self._placed()
        where = self._placement_index()
        live = self._live()
        # What each group holds (services, slot chunks, backend entries),
        # counted when a load balancer needs a group or grows; what the
        # smallest live node of each holds.
        load: dict[str, Cost] = {}
        capacity = {g: cap.capacity([live[n] for n in doc.lbns if n in live]) for g, (doc, _) in groups.items()}
        # Two load balancers cannot share a VIP, port, protocol and segment:
        # who serves each key is kept as the rules change (self._owner);
        # what this pass places goes in `claimed` first.
        claimed: dict[ServiceKey, str] = {}

        def owner(key: ServiceKey, lb_id: str) -> str:
            return claimed.get(key) or self._owner(key) or lb_id

        writes: list[tuple[str, str, PlacedLoadBalancer | None]] = []  # (group, lb id, rules or None)
        # Only the load balancers that changed, unless anything else may
        # have (a restart, a failed pass, nodes coming or going, a resync).
        if self._place_all:
            todo = self.lbs.values()
        else:
            todo = [lb for lb in (self.lbs.get(i) for i in self._place_dirty) if lb is not None]
        everything = self._place_all
        self._place_all, self._place_dirty = False, set()
        lbs_sorted = sorted(todo, key=lambda lb: (lb.created_at, lb.id))
        for lb in lbs_sorted:
            group = where.get(lb.id)
            if lb.deleting:
                self._unplaced.pop(lb.id, None)
                if group is not None:
                    writes.append((group, lb.id, None))
                continue
            current = placed_all[group][lb.id][0] if group else None
            refused_by_node = self._node_refusals.pop(lb.id, None)
            if (
                refused_by_node is not None
                and group is not None
                and current is not None
                and current.generation == refused_by_node[0]
                and current.refused is None
            ):
                # A node refused these rules: off the group, so that the
                # group's other load balancers converge; tried again when
                # the load balancer changes.
                off = current.model_copy(update={"services": [], "down": {}, "refused": refused_by_node[1]})
                writes.append((group, lb.id, off))
                continue
            down = self._health_down(lb, group, current)
            if current is not None and current.generation == lb.generation and current.down == down:
                continue
            # A service another load balancer already serves is left out;
            # the status says why (see _refusal).
            services = [s for s in self.compiled(lb) if owner(service_key(s), lb.id) == lb.id]
            services = sized(services, current.services if current is not None else None)
            services = without(services, down)
            if not load:
                load = dict(self._loads())
                load.update({g: ZERO for g in groups if g not in load})
            why = _invalid(services, self.compiled.known)
            self.checked += 1
            if why is None:
                self.compiled.passed(lb.id, services)
            if group is None:
                needs = cost(services)
                chosen = None if why else self._choose_group(load, capacity, needs, lb.lbn_group)
                if chosen is None:
                    self._unplaced[lb.id] = why or self._no_room(lb, needs, load, capacity)
                    self._dirty_lbs.add(lb.id)
                    if not why:
                        self._place_dirty.add(lb.id)  # looked at again next pass (a group may form, or free up)
                    continue
                group = chosen
                self._unplaced.pop(lb.id, None)
                load[group] = add(load[group], needs)
            else:
                assert current is not None
                have, needs = cost(current.services), cost(services)
                # Its changed tables (slots and backends) are written beside
                # the old ones, which serve until the flip: both must fit at
                # once. Only the tables that stay as they are count once.
                new = {s.id: s for s in services}
                kept = cost(s for s in current.services if _table(s) == _table(new.get(s.id)))
                after = add(sub(load[group], have), needs)
                peak = (after[0], load[group][1] + needs[1] - kept[1], load[group][2] + needs[2] - kept[2])
                short = None if why else cap.short(peak, capacity[group])
                if why or short:
                    why = why or f"its tables do not fit LB node group {group!r}: {short}"
                    if current.generation != lb.generation or current.refused != why:
                        # Refused: the rules it had keep forwarding.
                        refusal = current.model_copy(update={"generation": lb.generation, "refused": why})
                        writes.append((group, lb.id, refusal))
                    continue
                load[group] = after
            for s in services:
                claimed[service_key(s)] = lb.id
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
        if everything:
            for lb_id, g in where.items():
                if self.lbs.get(lb_id) is None:
                    writes.append((g, lb_id, None))

        deleted_from: set[str] = set()
        last_rule = last_group = 0
        # Each write is conditional on the revision this pass decided from.
        expects = {(g, lb_id): got[1] if (got := self.rules.entry(f"{g}/{lb_id}")) else 0 for g, lb_id, _ in writes}

        def conflict(lb_id: str) -> None:
            # Someone else wrote it (another operator?): the next pass
            # sees their version and decides again.
            self._place_dirty.add(lb_id)
            self._kick.set()

        async def delete(g: str, lb_id: str) -> None:
            nonlocal last_rule
            self._dirty_lbs.add(lb_id)
            try:
                last_rule = max(last_rule, await self.store.delete(keys.rules_key(g, lb_id), expect=expects[g, lb_id]))
                deleted_from.add(g)
            except Conflict:
                conflict(lb_id)

        async def put(puts: list[tuple[str, str, PlacedLoadBalancer]]) -> None:
            # Together (one store transaction for many), each into our own
            # copy at once (read-your-writes), rather than waiting for the
            # watch to bring it back: pushes go out now.
            self._dirty_lbs.update(lb_id for _, lb_id, _ in puts)
            got = await self.rules.put_many(
                [(f"{g}/{lb_id}", rules, dump(rules), expects[g, lb_id]) for g, lb_id, rules in puts]
            )
            for (_, lb_id, _), rev in zip(puts, got, strict=True):
                if isinstance(rev, Conflict):
                    conflict(lb_id)

        puts = [(g, lb_id, rules) for g, lb_id, rules in writes if rules is not None]
        deletes = [delete(g, lb_id) for g, lb_id, rules in writes if rules is None]
        await self._concurrently([put(puts), *deletes] if puts else deletes)
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
        # A deletion is not in our copy until the watch brings it: wait for
        # that, so the pushes below do not carry the deleted rules.
        if last_rule:
            await self.rules.wait_for(last_rule)
        if writes:
            log.debug("placed: %d rule changes in %d groups", len(writes), len({g for g, _, _ in writes}))

    def _no_room(self, lb: LoadBalancer, needs: Cost, load: dict[str, Cost], capacity: dict[str, Cost]) -> str:
        live = self._live()
        refusal = (
            f"LB node group {lb.lbn_group!r} cannot take it"
            if lb.lbn_group is not None
            else "no group of LB nodes can take it"
        )
        groups = {
            g: c
            for g, c in capacity.items()
            if (lb.lbn_group is None or g == lb.lbn_group) and any(n in live for n in self._group_docs()[g][0].lbns)
        }
        if not groups:
            return f"{refusal} (no live node)"
        free = {g: sub(c, load.get(g, ZERO)) for g, c in groups.items()}
        best = max(free.values(), key=lambda f: f[1])
        return (
            f"{refusal}: it needs {needs[0]} services, {needs[1]} slot chunks of Maglev table "
            f"memory and {needs[2]} backend entries; the most free is {cap.describe(best)}"
        )

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
