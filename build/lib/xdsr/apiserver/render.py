"""Stored documents → Octavia's response objects (plain dicts; schemas.py
documents their shape).

Attributes Octavia has and xdsr refuses are rendered with the neutral value
Octavia itself shows when they are unset, so that clients that read them
(gophercloud, the Octavia dashboard) keep working.
"""

from __future__ import annotations

from typing import Any

from xdsr.apiserver.status import child_statuses, lb_statuses
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, LoadBalancerStatus, Member, Pool

Obj = dict[str, Any]


def _common(obj: Listener | Pool | Member | HealthMonitor | LoadBalancer, prov: str, oper: str) -> Obj:
    return {
        "id": obj.id,
        "name": obj.name,
        "provisioning_status": prov,
        "operating_status": oper,
        "admin_state_up": obj.admin_state_up,
        "project_id": obj.project_id,
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
        "tags": list(obj.tags),
    }


def _ip(value: object) -> str | None:
    return None if value is None else str(value)


def member(lb: LoadBalancer, st: LoadBalancerStatus | None, m: Member) -> Obj:
    prov, oper = child_statuses(lb, st, "members", m.id, m.generation)
    return {
        **_common(m, prov, oper),
        "address": str(m.address),
        "protocol_port": m.protocol_port,
        "weight": m.weight,
        "backup": m.backup,
        "subnet_id": m.subnet_id,
        "monitor_address": _ip(m.monitor_address),
        "monitor_port": m.monitor_port,
        "vnic_type": "normal",
        "mac_address": m.mac_address,
        "segment": m.segment.model_dump() if m.segment else None,
    }


def healthmonitor(lb: LoadBalancer, st: LoadBalancerStatus | None, hm: HealthMonitor, full: bool = False) -> Obj:
    prov, oper = child_statuses(lb, st, "healthmonitors", hm.id, hm.generation)
    out = {
        **_common(hm, prov, oper),
        "type": hm.type,
        "delay": hm.delay,
        "timeout": hm.timeout,
        "max_retries": hm.max_retries,
        "max_retries_down": hm.max_retries_down,
        "http_method": hm.http_method,
        "url_path": hm.url_path,
        "expected_codes": hm.expected_codes,
        "http_version": None,
        "domain_name": None,
    }
    if not full:
        out["pools"] = [{"id": hm.pool_id}]
    return out


def pool_listeners(lb: LoadBalancer, pool_id: str) -> list[Listener]:
    return [li for li in lb.listeners if li.default_pool_id == pool_id]


def pool(lb: LoadBalancer, st: LoadBalancerStatus | None, p: Pool, full: bool = False) -> Obj:
    prov, oper = child_statuses(lb, st, "pools", p.id, p.generation)
    out = {
        **_common(p, prov, oper),
        "description": p.description,
        "protocol": p.protocol,
        "lb_algorithm": p.lb_algorithm,
        "session_persistence": None,
        "listeners": [{"id": li.id} for li in pool_listeners(lb, p.id)],
        "healthmonitor_id": p.healthmonitor_id,
        "tls_enabled": False,
        "tls_container_ref": None,
        "ca_tls_container_ref": None,
        "crl_container_ref": None,
        "tls_ciphers": None,
        "tls_versions": None,
        "alpn_protocols": None,
        "table_size": p.table_size,
    }
    if full:
        out["members"] = [member(lb, st, m) for m in p.members]
        hm = next((h for h in lb.healthmonitors if h.id == p.healthmonitor_id), None)
        out["healthmonitor"] = healthmonitor(lb, st, hm, full=True) if hm else None
    else:
        out["loadbalancers"] = [{"id": lb.id}]
        out["members"] = [{"id": m.id} for m in p.members]
    return out


def listener(lb: LoadBalancer, st: LoadBalancerStatus | None, li: Listener, full: bool = False) -> Obj:
    prov, oper = child_statuses(lb, st, "listeners", li.id, li.generation)
    out = {
        **_common(li, prov, oper),
        "description": li.description,
        "protocol": li.protocol,
        "protocol_port": li.protocol_port,
        "connection_limit": li.connection_limit,
        "default_pool_id": li.default_pool_id,
        "default_tls_container_ref": None,
        "sni_container_refs": [],
        "l7policies": [],
        "insert_headers": {},
        "timeout_client_data": li.timeout_client_data,
        "timeout_member_connect": li.timeout_member_connect,
        "timeout_member_data": li.timeout_member_data,
        "timeout_tcp_inspect": li.timeout_tcp_inspect,
        "client_ca_tls_container_ref": None,
        "client_authentication": "NONE",
        "client_crl_container_ref": None,
        "allowed_cidrs": None,
        "tls_ciphers": None,
        "tls_versions": None,
        "alpn_protocols": None,
        "hsts_max_age": None,
        "hsts_include_subdomains": False,
        "hsts_preload": False,
    }
    if not full:
        out["loadbalancers"] = [{"id": lb.id}]
    return out


def loadbalancer(lb: LoadBalancer, st: LoadBalancerStatus | None, full: bool = False) -> Obj:
    prov, oper = lb_statuses(lb, st)
    out = {
        **_common(lb, prov, oper),
        "description": lb.description,
        "vip_address": str(lb.vip_address),
        "vip_port_id": lb.vip_port_id,
        "vip_subnet_id": lb.vip_subnet_id,
        "vip_network_id": lb.vip_network_id,
        "vip_qos_policy_id": lb.vip_qos_policy_id,
        "vip_segment": lb.vip_segment.model_dump(),
        "lbn_group": lb.lbn_group,
        "vip_vnic_type": "normal",
        "additional_vips": [],
        "provider": lb.provider,
        "flavor_id": lb.flavor_id or "",
        "availability_zone": lb.availability_zone,
    }
    if full:
        out["listeners"] = [listener(lb, st, li, full=True) for li in lb.listeners]
        out["pools"] = [pool(lb, st, p, full=True) for p in lb.pools]
    else:
        out["listeners"] = [{"id": li.id} for li in lb.listeners]
        out["pools"] = [{"id": p.id} for p in lb.pools]
    return out


def status_tree(lb: LoadBalancer, st: LoadBalancerStatus | None) -> Obj:
    """Octavia's status tree: load balancer → listeners → their pool → members
    and health monitor. Like Octavia's, it reaches pools through listeners."""

    def pool_node(p: Pool) -> Obj:
        prov, oper = child_statuses(lb, st, "pools", p.id, p.generation)
        node: Obj = {"id": p.id, "name": p.name, "provisioning_status": prov, "operating_status": oper}
        hm = next((h for h in lb.healthmonitors if h.id == p.healthmonitor_id), None)
        if hm is not None:
            hprov, hoper = child_statuses(lb, st, "healthmonitors", hm.id, hm.generation)
            node["health_monitor"] = {
                "id": hm.id,
                "name": hm.name,
                "type": hm.type,
                "provisioning_status": hprov,
                "operating_status": hoper,
            }
        node["members"] = []
        for m in p.members:
            mprov, moper = child_statuses(lb, st, "members", m.id, m.generation)
            node["members"].append(
                {
                    "id": m.id,
                    "name": m.name,
                    "operating_status": moper,
                    "provisioning_status": mprov,
                    "address": str(m.address),
                    "protocol_port": m.protocol_port,
                }
            )
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
