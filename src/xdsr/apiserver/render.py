"""Stored documents → Octavia's response objects (plain dicts, so that
`fields=` can trim them).

What each response shows is derived from its schema in xdsr.api.responses
(attributes.Rendering): the stored object's attributes, the neutral values
of the attributes xdsr refuses, and what is computed here — statuses and
relations.
"""

from __future__ import annotations

from typing import Any

from xdsr.api import schemas as s
from xdsr.apiserver.attributes import Rendering
from xdsr.apiserver.document import pool_listeners
from xdsr.apiserver.status import child_statuses, lb_statuses
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, LoadBalancerStatus, Member, Pool

Obj = dict[str, Any]

STATUSES = ("provisioning_status", "operating_status")
MEMBER = Rendering(Member, s.MemberOut, STATUSES)
HEALTHMONITOR = Rendering(HealthMonitor, s.HealthMonitorOut, (*STATUSES, "pools"))
HEALTHMONITOR_FULL = Rendering(HealthMonitor, s.HealthMonitorFullOut, STATUSES)
POOL = Rendering(Pool, s.PoolOut, (*STATUSES, "listeners", "loadbalancers", "members"))
POOL_FULL = Rendering(Pool, s.PoolFullOut, (*STATUSES, "listeners", "members", "healthmonitor"))
LISTENER = Rendering(Listener, s.ListenerOut, (*STATUSES, "loadbalancers"))
LISTENER_FULL = Rendering(Listener, s.ListenerFullOut, STATUSES)
LOADBALANCER = Rendering(LoadBalancer, s.LoadBalancerOut, (*STATUSES, "listeners", "pools"))
LOADBALANCER_FULL = Rendering(LoadBalancer, s.LoadBalancerFullOut, (*STATUSES, "listeners", "pools"))
MEMBER_STATUS = Rendering(Member, s.MemberStatusOut, STATUSES)
HEALTHMONITOR_STATUS = Rendering(HealthMonitor, s.HealthMonitorStatusOut, STATUSES)


def _statuses(prov_oper: tuple[str, str]) -> Obj:
    return {"provisioning_status": prov_oper[0], "operating_status": prov_oper[1]}


def member(lb: LoadBalancer, st: LoadBalancerStatus | None, m: Member) -> Obj:
    return MEMBER(m, **_statuses(child_statuses(lb, st, "members", m.id, m.generation)))


def healthmonitor(lb: LoadBalancer, st: LoadBalancerStatus | None, hm: HealthMonitor, full: bool = False) -> Obj:
    statuses = _statuses(child_statuses(lb, st, "healthmonitors", hm.id, hm.generation))
    if full:
        return HEALTHMONITOR_FULL(hm, **statuses)
    return HEALTHMONITOR(hm, **statuses, pools=[{"id": hm.pool_id}])


def pool(lb: LoadBalancer, st: LoadBalancerStatus | None, p: Pool, full: bool = False) -> Obj:
    statuses = _statuses(child_statuses(lb, st, "pools", p.id, p.generation))
    listeners = [{"id": li.id} for li in pool_listeners(lb, p.id)]
    if full:
        hm = next((h for h in lb.healthmonitors if h.id == p.healthmonitor_id), None)
        return POOL_FULL(
            p,
            **statuses,
            listeners=listeners,
            members=[member(lb, st, m) for m in p.members],
            healthmonitor=healthmonitor(lb, st, hm, full=True) if hm else None,
        )
    return POOL(
        p, **statuses, listeners=listeners, loadbalancers=[{"id": lb.id}], members=[{"id": m.id} for m in p.members]
    )


def listener(lb: LoadBalancer, st: LoadBalancerStatus | None, li: Listener, full: bool = False) -> Obj:
    statuses = _statuses(child_statuses(lb, st, "listeners", li.id, li.generation))
    if full:
        return LISTENER_FULL(li, **statuses)
    return LISTENER(li, **statuses, loadbalancers=[{"id": lb.id}])


def loadbalancer(lb: LoadBalancer, st: LoadBalancerStatus | None, full: bool = False) -> Obj:
    statuses = _statuses(lb_statuses(lb, st))
    if full:
        return LOADBALANCER_FULL(
            lb,
            **statuses,
            listeners=[listener(lb, st, li, full=True) for li in lb.listeners],
            pools=[pool(lb, st, p, full=True) for p in lb.pools],
        )
    return LOADBALANCER(
        lb, **statuses, listeners=[{"id": li.id} for li in lb.listeners], pools=[{"id": p.id} for p in lb.pools]
    )


def status_tree(lb: LoadBalancer, st: LoadBalancerStatus | None) -> Obj:
    """Octavia's status tree: load balancer → listeners → their pool → members
    and health monitor. Like Octavia's, it reaches pools through listeners."""

    def pool_node(p: Pool) -> Obj:
        prov, oper = child_statuses(lb, st, "pools", p.id, p.generation)
        node: Obj = {"id": p.id, "name": p.name, "provisioning_status": prov, "operating_status": oper}
        hm = next((h for h in lb.healthmonitors if h.id == p.healthmonitor_id), None)
        if hm is not None:
            hm_statuses = _statuses(child_statuses(lb, st, "healthmonitors", hm.id, hm.generation))
            node["health_monitor"] = HEALTHMONITOR_STATUS(hm, **hm_statuses)
        node["members"] = [
            MEMBER_STATUS(m, **_statuses(child_statuses(lb, st, "members", m.id, m.generation))) for m in p.members
        ]
        return node

    pools = {p.id: p for p in lb.pools}
    listeners = []
    for li in lb.listeners:
        prov, oper = child_statuses(lb, st, "listeners", li.id, li.generation)
        default = pools.get(li.default_pool_id or "")
        listeners.append(
            {
                "id": li.id,
                "name": li.name,
                "operating_status": oper,
                "provisioning_status": prov,
                "pools": [pool_node(default)] if default else [],
            }
        )
    prov, oper = lb_statuses(lb, st)
    return {
        "statuses": {
            "loadbalancer": {
                "id": lb.id,
                "name": lb.name,
                "operating_status": oper,
                "provisioning_status": prov,
                "listeners": listeners,
            }
        }
    }


def sync_statuses(lb: LoadBalancer, st: LoadBalancerStatus | None) -> Obj:
    """xdsr: every object's statuses in one flat document, with the listeners'
    counters and the operator's reason for an ERROR — what a client following
    xdsr (Octavia's xdsr provider agent) needs in one request."""

    def entry(obj_id: str, statuses: tuple[str, str]) -> Obj:
        return {"id": obj_id, "provisioning_status": statuses[0], "operating_status": statuses[1]}

    prov, oper = lb_statuses(lb, st)
    listeners = []
    for li in lb.listeners:
        counters = st.stats.get(li.id) if st is not None else None
        listeners.append(
            {
                **entry(li.id, child_statuses(lb, st, "listeners", li.id, li.generation)),
                "bytes_in": counters.bytes if counters else 0,
                "packets_in": counters.packets if counters else 0,
            }
        )
    return {
        **entry(lb.id, (prov, oper)),
        "error": st.error if st is not None and prov == "ERROR" else None,
        "listeners": listeners,
        "pools": [entry(p.id, child_statuses(lb, st, "pools", p.id, p.generation)) for p in lb.pools],
        "members": [
            {**entry(m.id, child_statuses(lb, st, "members", m.id, m.generation)), "pool_id": p.id}
            for p in lb.pools
            for m in p.members
        ],
        "healthmonitors": [
            entry(h.id, child_statuses(lb, st, "healthmonitors", h.id, h.generation)) for h in lb.healthmonitors
        ],
    }


def stats(st: LoadBalancerStatus | None, listener_ids: list[str]) -> Obj:
    """Octavia's counters from what LB nodes can count: the packets and bytes
    they forwarded. They see only the inbound direction and no connections."""
    packets = bytes_in = 0
    if st is not None:
        for lid in listener_ids:
            s = st.stats.get(lid)
            if s is not None:
                packets += s.packets
                bytes_in += s.bytes
    return {
        "stats": {
            "bytes_in": bytes_in,
            "bytes_out": 0,
            "active_connections": 0,
            "total_connections": 0,
            "request_errors": 0,
            "packets_in": packets,
        }
    }
