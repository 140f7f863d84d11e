"""What a load balancer's status is, from what its LB nodes report.

Provisioning is ACTIVE once every live node of the group has applied the
group generation (of the group's epoch) that holds the load balancer's latest
change, ERROR when a node could not install one of its services (or the
operator refused it: a VIP another load balancer already serves, tables that
do not fit, a service a node refused). Operating status comes from what the
nodes really forward, whatever generation they are at: a listener is ONLINE
when every live node has its service installed, DEGRADED when some have (a
node restarted with empty maps has none) or its pool is degraded, a member
when every node resolved its MAC. While a change has not reached every node,
what no node can tell yet keeps its last known status. With BGP, the router
sends a VIP only to the nodes announcing it: a load balancer is DEGRADED
while one of its forwarding nodes does not announce, ERROR when none does
(docs/bgp.md).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from xdsr.model.agent import AgentState, ServiceReport
from xdsr.model.bgp import parse_summary
from xdsr.model.loadbalancer import (
    LbnReport,
    ListenerStats,
    LoadBalancer,
    LoadBalancerStatus,
    ObjectStatus,
    OperatingStatus,
)
from xdsr.operator.compile import service_id


@dataclass(frozen=True)
class NodeReport:
    name: str
    live: bool  # registered (its lease is alive)
    state: AgentState | None  # what it last told us
    error: str | None  # why we could not reach it or it refused the state
    bgp: str | None = None  # its BGP state as it registered it (model.bgp summary); None: no BGP


@dataclass(frozen=True)
class Placement:
    group: str | None
    generation: int  # LoadBalancer.generation compiled into the group; 0 = not placed
    needed_revision: int  # group generation the nodes must reach to forward it
    error: str | None = None  # why it is not (fully) placed
    refused: frozenset[str] = frozenset()  # listener ids the operator left out (conflicts)
    epoch: str = ""  # the group's epoch (view.group_epoch): a node's generations count only in it


@dataclass(frozen=True)
class Health:
    """What the group's nodes together say of the backends they check, per
    service id: a member is down (or unchecked) when most of the nodes that
    report the service say so: one node's view (its own path to the backend)
    does not take a backend out of every node's table."""

    down: dict[str, frozenset[str]]
    unchecked: dict[str, frozenset[str]]


def judge_health(lb_id: str, nodes: list[NodeReport]) -> Health:
    voters: Counter[str] = Counter()  # service id -> live nodes reporting it
    down: defaultdict[str, Counter[str]] = defaultdict(Counter)  # service id -> member -> nodes saying down
    unchecked: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for n in nodes:
        if not n.live or n.state is None:
            continue
        for r in n.state.services:
            if r.id.startswith(lb_id + "/"):
                voters[r.id] += 1
                down[r.id].update(r.down)
                unchecked[r.id].update(r.unchecked)
    out_down, out_unchecked = {}, {}
    for sid, n in voters.items():
        blind = unchecked[sid]
        out_unchecked[sid] = frozenset(m for m, c in blind.items() if 2 * c > n)
        out_down[sid] = frozenset(m for m, c in down[sid].items() if 2 * c > n - blind[m])
    return Health(out_down, out_unchecked)


_OBJECT_STATUS: dict[tuple[str, str], ObjectStatus] = {}


def _object_status(provisioning: str = "ACTIVE", operating: str = "ONLINE") -> ObjectStatus:
    """One shared (never changed) ObjectStatus per pair: a status holds one
    per member, hundreds of them alike."""
    got = _OBJECT_STATUS.get((provisioning, operating))
    if got is None:
        got = _OBJECT_STATUS[provisioning, operating] = ObjectStatus(
            provisioning_status=provisioning,  # type: ignore[arg-type]
            operating_status=operating,  # type: ignore[arg-type]
        )
    return got


def _combine(states: list[OperatingStatus]) -> OperatingStatus:
    """Several objects' statuses as one: ONLINE when all are, ERROR when all
    are, DEGRADED for anything between (a DEGRADED one alone included)."""
    if all(s == "ONLINE" for s in states):
        return "ONLINE"
    if all(s == "ERROR" for s in states):
        return "ERROR"
    return "DEGRADED"


def _routed(op: OperatingStatus, lbns: list[LbnReport]) -> OperatingStatus:
    """With BGP the router sends the VIP's traffic only to the nodes that
    announce it: a node that forwards the VIP but does not announce it
    (drained, XDP program gone, session down) leaves the others carrying it
    all (DEGRADED); when none announces, the VIP is unreachable (ERROR)."""
    speakers = [r for r in lbns if r.forwarding and r.announcing is not None]
    if not speakers or op not in ("ONLINE", "DEGRADED"):
        return op
    if not any(r.announcing for r in speakers):
        return "ERROR"
    return "DEGRADED" if not all(r.announcing for r in speakers) else op


def compute(
    lb: LoadBalancer, placement: Placement, nodes: list[NodeReport], prev: LoadBalancerStatus | None
) -> LoadBalancerStatus:
    health = judge_health(lb.id, nodes)
    monitored = {hm.pool_id for hm in lb.healthmonitors if hm.admin_state_up}
    live = [n for n in nodes if n.live]
    # A node of another epoch counts as at generation 0: its generations are
    # not comparable with the group's (docs/operator.md).
    applied = {n.name: (n.state.generation if n.state and n.state.epoch == placement.epoch else 0) for n in live}
    reached = [n for n in live if applied[n.name] >= placement.needed_revision > 0]
    all_reached = bool(live) and len(reached) == len(live) and placement.generation > 0

    observed = prev.observed_generation if prev else 0
    if all_reached:
        observed = max(observed, placement.generation)

    # What each live node forwards of this load balancer now, whatever
    # generation it is at: a node still at an older generation forwards
    # this load balancer's older rules, and that is its operating status
    # until the change reaches it. Whether the latest rules installed
    # (provisioning) is judged only from the nodes that have them.
    forwards: dict[str, dict[str, ServiceReport]] = {}
    for n in live:
        if n.state is not None:
            forwards[n.name] = {s.id: s for s in n.state.services if s.id.startswith(lb.id + "/")}
    per_node = {n.name: forwards.get(n.name, {}) for n in reached}
    placed_now = placement.generation == lb.generation
    settled = all_reached and placed_now  # every node forwards this very generation

    errors: list[str] = []
    if placement.error:
        errors.append(placement.error)
    listeners: dict[str, ObjectStatus] = {}
    stats: dict[str, ListenerStats] = {}
    member_state: dict[str, OperatingStatus] = {}
    pools_in_use = {listener.default_pool_id for listener in lb.listeners if listener.default_pool_id}
    pools = {p.id: p for p in lb.pools}

    def known(kind: str, obj_id: str) -> OperatingStatus | None:
        got: ObjectStatus | None = getattr(prev, kind).get(obj_id) if prev is not None else None
        return got.operating_status if got is not None else None

    for listener in lb.listeners:
        sid = service_id(lb.id, listener.id)
        current = [per_node[n][sid] for n in per_node if sid in per_node[n]]
        reports = [forwards[n][sid] for n in forwards if sid in forwards[n]]
        stats[listener.id] = ListenerStats(packets=sum(r.packets for r in reports), bytes=sum(r.bytes for r in reports))
        failed = [r for r in current if not r.ok]
        for r in failed:
            errors.append(f"listener {listener.id}: {r.error}")
        # A node at the generation that brings the listener's rules holds
        # them (an apply is all or nothing), so one that does not report
        # them was not brought there by this operator (a state pushed by
        # hand, say): not installed, whatever its generation says.
        expected = placed_now and not placement.error and listener.id not in placement.refused
        expected = expected and lb.admin_state_up and listener.admin_state_up and listener.default_pool_id in pools
        missing = sorted(n for n in per_node if sid not in per_node[n]) if expected else []
        if missing:
            failed.append(ServiceReport(id=sid, ok=False))
            errors.append(f"listener {listener.id}: not installed on LB node(s) {', '.join(missing)}")
        if listener.id in placement.refused:
            listeners[listener.id] = ObjectStatus(provisioning_status="ERROR", operating_status="ERROR")
            continue
        # Judged by the nodes that should forward it: those that have it,
        # those at the generation that brings the latest rules (once they
        # are placed), and those that hold nothing at all (restarted with
        # empty maps). A node on its way there (an older generation without
        # it) is not told yet; if no node can tell, what was last known
        # stands (OFFLINE for a listener no node had yet).
        kept = False
        if not listener.admin_state_up or not lb.admin_state_up:
            op: OperatingStatus = "OFFLINE"
        elif listener.default_pool_id is None:
            op = "OFFLINE"
        elif not live:
            op = "ERROR"
        else:
            judges = [
                n
                for n in live
                if sid in forwards.get(n.name, {}) or (n in reached and placed_now) or not applied[n.name]
            ]
            ok = [r for r in reports if r.ok]
            if judges:
                op = "ONLINE" if len(ok) == len(judges) else ("DEGRADED" if ok else "ERROR")
            else:
                op, kept = known("listeners", listener.id) or "OFFLINE", True
        listeners[listener.id] = ObjectStatus(provisioning_status="ERROR" if failed else "ACTIVE", operating_status=op)
        pool = pools.get(listener.default_pool_id or "")
        if pool is not None:
            unresolved = {m for r in reports for m in r.unresolved}
            down = health.down.get(sid, frozenset())
            blind = health.unchecked.get(sid, frozenset())
            for m in pool.members:
                if not m.admin_state_up or not pool.admin_state_up:
                    member_state[m.id] = "OFFLINE"
                elif m.id in unresolved or m.id in down:
                    member_state[m.id] = "ERROR"
                elif pool.id in monitored and m.id in blind:
                    member_state[m.id] = "NO_MONITOR"  # the nodes cannot check it (docs/agent.md)
                elif kept or not (settled or known("members", m.id)):
                    # Not in any table yet (the change adding it is on its way), or nothing known.
                    member_state.setdefault(m.id, known("members", m.id) or "OFFLINE")
                else:
                    member_state.setdefault(m.id, op if op != "DEGRADED" else "ONLINE")

    members: dict[str, ObjectStatus] = {}
    pool_status: dict[str, ObjectStatus] = {}
    for pool in lb.pools:
        states: list[OperatingStatus] = []
        for m in pool.members:
            st = member_state.get(m.id, "OFFLINE" if pool.id not in pools_in_use else "ONLINE")
            members[m.id] = _object_status(operating=st)
            if st != "OFFLINE":
                states.append("ONLINE" if st == "NO_MONITOR" else st)
        offline = not pool.admin_state_up or (pool.members and not states)
        op = "OFFLINE" if offline else _combine(states)
        pool_status[pool.id] = _object_status(operating=op)

    # A listener forwarding to a pool that has members down (or all of
    # them) is not wholly ONLINE.
    for listener in lb.listeners:
        got = listeners[listener.id]
        pool_op = pool_status.get(listener.default_pool_id or "", ObjectStatus()).operating_status
        if got.operating_status == "ONLINE" and pool_op in ("DEGRADED", "ERROR"):
            listeners[listener.id] = got.model_copy(update={"operating_status": "DEGRADED"})

    if not lb.admin_state_up:
        lb_op: OperatingStatus = "OFFLINE"
    elif not live or not placement.generation:
        lb_op = "OFFLINE" if not lb.listeners else "ERROR"
    else:
        lb_op = _combine([s.operating_status for s in listeners.values() if s.operating_status != "OFFLINE"])
        if lb_op == "ONLINE" and any(
            s.operating_status != "ONLINE" for s in pool_status.values() if s.operating_status != "OFFLINE"
        ):
            lb_op = "DEGRADED"

    lbns = {}
    for n in nodes:
        sids = [service_id(lb.id, listener.id) for listener in lb.listeners]
        mine = per_node.get(n.name, {})
        forwarding = n.live and n.name in per_node and all(mine[s].ok for s in sids if s in mine)
        err = n.error or (n.state.error if n.state else None)
        if not n.live:
            err = err or "not registered (down)"
        # The node's generation as far as this load balancer is concerned:
        # past the one holding its latest rules, further generations change
        # nothing here, and writing them would rewrite every load balancer's
        # status on every change to any of them.
        gen = applied.get(n.name, n.state.generation if n.state else 0)
        lbns[n.name] = LbnReport(
            applied_generation=min(gen, placement.needed_revision) if placement.needed_revision else gen,
            forwarding=forwarding,
            error=err,
            bgp=n.bgp,
            announcing=None if n.bgp is None else forwarding and parse_summary(n.bgp).announcing,
        )
    lb_op = _routed(lb_op, list(lbns.values()))

    provisioning = "ERROR" if errors else "ACTIVE"
    return LoadBalancerStatus(
        id=lb.id,
        observed_generation=observed,
        computed_for=lb.generation,
        group=placement.group,
        provisioning_status=provisioning,
        operating_status=lb_op,
        error="; ".join(errors) or None,
        listeners=listeners,
        pools=pool_status,
        members=members,
        healthmonitors={hm.id: _object_status() for hm in lb.healthmonitors},
        lbns=lbns,
        stats=stats,
        updated_at=time.time(),
    )


_BUT_STATS = tuple(f for f in LoadBalancerStatus.model_fields if f not in ("stats", "updated_at"))


def same_but_stats(a: LoadBalancerStatus, b: LoadBalancerStatus) -> bool:
    """Equal apart from counters and the timestamp: no need to write soon."""
    return all(getattr(a, f) == getattr(b, f) for f in _BUT_STATS)
