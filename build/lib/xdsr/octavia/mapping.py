"""Octavia's objects → the xdsr API server's request bodies, 1:1.

Inputs are octavia-lib provider objects as plain dicts (`*_id` naming:
`loadbalancer_id`, `listener_id`, `pool_id`, `member_id`,
`healthmonitor_id`). Every xdsr object takes Octavia's id (the API server
accepts client-chosen ids from admin tokens), so nothing maps ids and the
driver keeps no state. Pure functions.

Attributes xdsr stores but Octavia has no notion of come from elsewhere:
`vip_segment` and a member's `mac_address`/`segment` from Neutron when the
agent looks them up (else the xdsr API server maps `vip_subnet_id`/`subnet_id`
to a segment with its networks file and the LB nodes resolve MACs), and
`lbn_group` from the flavor or availability zone metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Obj = Mapping[str, Any]
Body = dict[str, Any]

# What a member needs beyond Octavia's attributes: (mac_address, segment), either may be None.
MemberExtra = Callable[[Obj], tuple[str | None, dict[str, Any] | None]]

HTTP_MONITORS = ("HTTP", "HTTPS")


def _none(_: Obj) -> tuple[None, None]:
    return None, None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _drop_none(body: Body, keep: tuple[str, ...] = ()) -> Body:
    return {k: v for k, v in body.items() if v is not None or k in keep}


def loadbalancer_attrs(lb: Obj) -> Body:
    """What may change on a load balancer after its creation."""
    return {
        "name": _text(lb.get("name")),
        "description": _text(lb.get("description")),
        "admin_state_up": bool(lb.get("admin_state_up", True)),
        "vip_qos_policy_id": lb.get("vip_qos_policy_id"),
    }


def loadbalancer(
    lb: Obj,
    *,
    lbn_group: str | None = None,
    vip_segment: dict[str, Any] | None = None,
    member_extra: MemberExtra = _none,
    skip: frozenset[str] = frozenset(),
) -> Body:
    """The fully populated create of a load balancer and everything under it
    (one write in xdsr, so its LB nodes get it in one generation). `skip`:
    ids of objects being deleted."""
    az = lb.get("availability_zone")
    body: Body = {
        "id": lb["loadbalancer_id"],
        "project_id": lb.get("project_id"),
        **loadbalancer_attrs(lb),
        "vip_address": lb.get("vip_address"),
        "vip_subnet_id": lb.get("vip_subnet_id"),
        "vip_network_id": lb.get("vip_network_id"),
        "vip_port_id": lb.get("vip_port_id"),
        "vip_segment": vip_segment,
        "lbn_group": lbn_group,
        # At creation Octavia hands the zone's metadata, elsewhere its name.
        "availability_zone": az if isinstance(az, str) else None,
    }
    body = _drop_none(body)
    pools = [p for p in lb.get("pools") or [] if p and p.get("pool_id") not in skip]
    if pools:
        body["pools"] = [pool(p, member_extra=member_extra, skip=skip) for p in pools]
    listeners = [li for li in lb.get("listeners") or [] if li and li.get("listener_id") not in skip]
    if listeners:
        pool_ids = {p["pool_id"] for p in pools}
        body["listeners"] = []
        for li in listeners:
            item = listener(li)
            if item.get("default_pool_id") not in pool_ids:
                item.pop("default_pool_id", None)
            body["listeners"].append(item)
    return body


def listener_attrs(li: Obj) -> Body:
    return {
        "name": _text(li.get("name")),
        "description": _text(li.get("description")),
        "admin_state_up": bool(li.get("admin_state_up", True)),
        "timeout_client_data": li.get("timeout_client_data"),
        "timeout_member_connect": li.get("timeout_member_connect"),
        "timeout_member_data": li.get("timeout_member_data"),
        "timeout_tcp_inspect": li.get("timeout_tcp_inspect"),
        "default_pool_id": li.get("default_pool_id"),
    }


def listener(li: Obj, loadbalancer_id: str | None = None) -> Body:
    body = {
        "id": li["listener_id"],
        "protocol": li.get("protocol"),
        "protocol_port": li.get("protocol_port"),
        **listener_attrs(li),
    }
    if loadbalancer_id is not None:
        body["loadbalancer_id"] = loadbalancer_id
    return _drop_none(body)


def pool_attrs(p: Obj) -> Body:
    return {
        "name": _text(p.get("name")),
        "description": _text(p.get("description")),
        "admin_state_up": bool(p.get("admin_state_up", True)),
        "lb_algorithm": p.get("lb_algorithm"),
    }


def pool(
    p: Obj,
    *,
    loadbalancer_id: str | None = None,
    member_extra: MemberExtra = _none,
    skip: frozenset[str] = frozenset(),
) -> Body:
    body: Body = {"id": p["pool_id"], "protocol": p.get("protocol"), **pool_attrs(p)}
    if loadbalancer_id is not None:
        body["loadbalancer_id"] = loadbalancer_id
    members = [m for m in p.get("members") or [] if m and m.get("member_id") not in skip]
    if members:
        body["members"] = [member(m, member_extra) for m in members]
    hm = p.get("healthmonitor")
    if hm and hm.get("healthmonitor_id") not in skip:
        body["healthmonitor"] = healthmonitor(hm)
    return _drop_none(body)


def member_attrs(m: Obj, extra: MemberExtra = _none) -> Body:
    mac, segment = extra(m)
    body: Body = {
        "name": _text(m.get("name")),
        "admin_state_up": bool(m.get("admin_state_up", True)),
        "weight": 1 if m.get("weight") is None else m.get("weight"),
        "monitor_address": m.get("monitor_address"),
        "monitor_port": m.get("monitor_port"),
    }
    # Only what is known: without Neutron the LB nodes resolve the MAC and the
    # API server fills the segment from subnet_id.
    if mac is not None:
        body["mac_address"] = mac
    if segment is not None:
        body["segment"] = segment
    return body


def member(m: Obj, extra: MemberExtra = _none) -> Body:
    body = {
        "id": m["member_id"],
        "address": m.get("address"),
        "protocol_port": m.get("protocol_port"),
        "subnet_id": m.get("subnet_id"),
        **member_attrs(m, extra),
    }
    return _drop_none(body)


def healthmonitor_attrs(hm: Obj) -> Body:
    body = {
        "name": _text(hm.get("name")),
        "admin_state_up": bool(hm.get("admin_state_up", True)),
        "delay": hm.get("delay"),
        "timeout": hm.get("timeout"),
        "max_retries": hm.get("max_retries"),
        "max_retries_down": hm.get("max_retries_down") or 3,
    }
    # xdsr refuses HTTP attributes on other monitors; Octavia may carry its defaults.
    if hm.get("type") in HTTP_MONITORS:
        body.update(
            http_method=hm.get("http_method"), url_path=hm.get("url_path"), expected_codes=hm.get("expected_codes")
        )
    return body


def healthmonitor(hm: Obj, pool_id: str | None = None) -> Body:
    body = {"id": hm["healthmonitor_id"], "type": hm.get("type"), **healthmonitor_attrs(hm)}
    if pool_id is not None:
        body["pool_id"] = pool_id
    return _drop_none(body)


def differs(wanted: Obj, current: Obj) -> Body:
    """The attributes of `wanted` whose values `current` (an xdsr object as
    the API renders it) does not have: the body of an update, empty if none."""
    out: Body = {}
    for key, value in wanted.items():
        have = current.get(key)
        if key in ("name", "description"):
            have, value = _text(have), _text(value)
        elif key in ("monitor_address",) and value is not None:
            value = str(value)
        elif key == "mac_address" and value is not None and have is not None:
            value, have = str(value).lower(), str(have).lower()
        if value != have:
            out[key] = value
    return out
