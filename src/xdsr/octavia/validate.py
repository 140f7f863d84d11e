"""What Octavia may ask that xdsr refuses, found before anything is queued,
so that Octavia answers the request itself with our reason (it turns
UnsupportedOptionError into HTTP 501 and rolls back).

The inputs are octavia-lib provider objects as plain dicts
(`to_dict(recurse=True, render_unsets=False)`: an attribute the request did
not set is absent). Each is mapped strictly into the xdsr API's request
schema (mapping.py) and validated by it: the refusals and their words are
the API server's own (xdsr.api.schemas, xdsr.api.l2dsr, xdsr.api.faults), so
a user reads the same explanation whichever API they used. An update is
judged as the object it makes (the old one with the new attributes).

What stays here is what only the driver sees: the flavor and availability
zone metadata (the LB node group), and the checks across objects that
Octavia hands over one at a time (a member's port against its listener's, a
pool's protocol against its listener's, a monitor against its pool) — the
API server makes those on its stored document. Pure functions: no octavia
import, testable without Octavia.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from xdsr.api import l2dsr
from xdsr.api import schemas as s
from xdsr.api.faults import validation_text
from xdsr.octavia import mapping

Obj = Mapping[str, Any]

FLAVOR_METADATA = {
    "lbn_group": "The group of xdsr LB nodes that serves load balancers of this flavor "
    "(lower-case letters, digits and dashes; the group an LB node joins with `xdsr agent --group`). "
    "Default: the xdsr operator chooses the least loaded group.",
}
AZ_METADATA = {
    "lbn_group": "The group of xdsr LB nodes in this availability zone "
    "(lower-case letters, digits and dashes). A flavor's lbn_group, if any, must name the same group.",
}

_GROUP = TypeAdapter(s.LbnGroup)


class Refused(ValueError):
    """An option xdsr cannot honour; the driver raises UnsupportedOptionError with str(self)."""

    def __init__(self, where: str, reason: str | None = None) -> None:
        super().__init__(where if reason is None else f"{where}: {reason}")


def _check(schema: type[BaseModel], body: dict[str, Any], where: str) -> None:
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        raise Refused(validation_text(list(exc.errors()), root=where)) from None


# --- the LB node group: flavor and availability zone metadata ------------------------------


def group_name(value: object, where: str) -> str:
    try:
        return str(_GROUP.validate_python(value))
    except ValidationError:
        reason = f"{value!r} is not an xdsr LB node group name (lower-case letters, digits, dashes)"
        raise Refused(where, reason) from None


def flavor_metadata(metadata: Obj | None, where: str = "flavor") -> str | None:
    """Check flavor metadata; the LB node group it names, if any."""
    return _metadata(metadata, FLAVOR_METADATA, where)


def az_metadata(metadata: Obj | None, where: str = "availability_zone") -> str | None:
    return _metadata(metadata, AZ_METADATA, where)


def _metadata(metadata: Obj | None, known: dict[str, str], where: str) -> str | None:
    if not metadata:
        return None
    if not isinstance(metadata, Mapping):
        raise Refused(where, "metadata must be a JSON object")
    unknown = sorted(set(metadata) - set(known))
    if unknown:
        raise Refused(
            f"{where}.{unknown[0]}",
            f"not an xdsr {where.split('.')[0].replace('_', ' ')} option; xdsr knows only: {', '.join(sorted(known))}",
        )
    group = metadata.get("lbn_group")
    return group_name(group, f"{where}.lbn_group") if group is not None else None


def lbn_group(lb: Obj) -> str | None:
    """The LB node group a load balancer asks for through its flavor or availability zone."""
    from_flavor = flavor_metadata(lb.get("flavor"))
    az = lb.get("availability_zone")
    # At creation Octavia hands the zone's metadata; elsewhere its name.
    from_az = az_metadata(az) if isinstance(az, Mapping) else None
    if from_flavor and from_az and from_flavor != from_az:
        raise Refused(
            "flavor.lbn_group",
            f"the flavor asks for LB node group {from_flavor!r} but the availability zone is group {from_az!r}",
        )
    return from_flavor or from_az


# --- objects ----------------------------------------------------------------------------------


def loadbalancer(lb: Obj) -> str | None:
    """Check a load balancer and everything under it; the LB node group it asks for."""
    _check(s.LoadBalancerCreate, mapping.loadbalancer(lb), "loadbalancer")
    group = lbn_group(lb)
    pools = {p.get("pool_id"): p for p in lb.get("pools") or [] if isinstance(p, Mapping)}
    for i, li in enumerate(lb.get("listeners") or []):
        where = f"loadbalancer.listeners[{i}].default_pool"
        nested = li.get("default_pool")
        if nested and nested.get("pool_id") not in pools:
            pool(nested, where)  # not among the load balancer's pools: judged here
        default = nested or pools.get(li.get("default_pool_id"))
        if default:
            pool_fits_listener(default, li, where)
    for i, p in enumerate(lb.get("pools") or []):
        _monitor_fits(p, f"loadbalancer.pools[{i}]")
    return group


def listener(li: Obj, where: str = "listener") -> None:
    _check(s.ListenerInline, mapping.listener(li), where)
    default = li.get("default_pool")
    if isinstance(default, Mapping) and default:
        pool(default, f"{where}.default_pool")
        pool_fits_listener(default, li, f"{where}.default_pool")


def pool(p: Obj, where: str = "pool") -> None:
    _check(s.PoolInline, mapping.pool(p), where)
    _monitor_fits(p, where)


def member(m: Obj, where: str = "member") -> None:
    _check(s.MemberInline, mapping.member(m), where)


def healthmonitor(hm: Obj, where: str = "healthmonitor", pool_protocol: object = None) -> None:
    _check(s.HealthMonitorInline, mapping.healthmonitor(hm), where)
    monitor_fits(hm, pool_protocol, where)


# --- across objects ---------------------------------------------------------------------------


def pool_fits_listener(p: Obj, li: Obj, where: str = "pool") -> None:
    """A pool that is (or becomes) a listener's default pool: same protocol, members on its port."""
    if p.get("protocol") != li.get("protocol"):
        raise Refused(f"{where}.protocol", l2dsr.PROTOCOL_MISMATCH)
    members_fit_port(p, li, where)


def members_fit_port(p: Obj, li: Obj, where: str) -> None:
    port = li.get("protocol_port")
    for i, m in enumerate(p.get("members") or []):
        member_port(m, port, f"{where}.members[{i}]")


def member_port(m: Obj, listener_port: object, where: str = "member") -> None:
    """A member must listen on its listener's port: the LB nodes do not translate ports."""
    port = m.get("protocol_port")
    if listener_port is not None and port is not None and port != listener_port:
        raise Refused(
            f"{where}.protocol_port",
            f"{port} differs from the listener's protocol_port {listener_port}: {l2dsr.PORT_TRANSLATION}",
        )


def _monitor_fits(p: Obj, where: str) -> None:
    hm = p.get("healthmonitor")
    if isinstance(hm, Mapping) and hm:
        monitor_fits(hm, p.get("protocol"), f"{where}.healthmonitor")


def monitor_fits(hm: Obj, pool_protocol: object, where: str = "healthmonitor") -> None:
    """A monitor's probes against its pool: they end before the next starts, and can reach its members."""
    kind, delay, timeout = hm.get("type"), hm.get("delay"), hm.get("timeout")
    if isinstance(delay, int) and isinstance(timeout, int) and timeout > delay:
        raise Refused(f"{where}.timeout", f"{timeout} exceeds delay {delay}: a probe must end before the next")
    if pool_protocol == "UDP" and kind is not None and kind not in l2dsr.UDP_POOL_MONITORS:
        raise Refused(f"{where}.type", f"the pool is UDP, so only {', '.join(l2dsr.UDP_POOL_MONITORS)} monitors apply")
    if pool_protocol == "TCP" and kind == "UDP-CONNECT":
        raise Refused(f"{where}.type", "UDP-CONNECT applies to UDP pools only")
