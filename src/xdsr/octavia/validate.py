"""What Octavia may ask that L2 direct server return cannot do, found before
anything is queued, so that Octavia answers the request itself with our
reason (it turns UnsupportedOptionError into HTTP 501 and rolls back).

The inputs are octavia-lib provider objects as plain dicts
(`to_dict(recurse=True, render_unsets=False)`: an attribute the request did
not set is absent). The reasons are the xdsr API server's own
(xdsr.api.l2dsr), so a user reads the same explanation whichever API
they used. Pure functions: no octavia import, testable without Octavia.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from xdsr.api import l2dsr
from xdsr.api.l2dsr import UDP_POOL_MONITORS

Obj = Mapping[str, Any]

# The xdsr API server's rule for group names (schemas.LbnGroup).
GROUP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

FLAVOR_METADATA = {
    "lbn_group": "The group of xdsr LB nodes that serves load balancers of this flavor "
    "(lower-case letters, digits and dashes; the group an LB node joins with `xdsr agent --group`). "
    "Default: the xdsr operator chooses the least loaded group.",
}
AZ_METADATA = {
    "lbn_group": "The group of xdsr LB nodes in this availability zone "
    "(lower-case letters, digits and dashes). A flavor's lbn_group, if any, must name the same group.",
}

LB_ALGORITHMS = {
    # Both mean the same in xdsr: Maglev over the hash of the 5-tuple.
    "SOURCE_IP_PORT": "Maglev 5-tuple hash",
    "ROUND_ROBIN": "Maglev 5-tuple hash (there is no per-request rotation: a flow's member is a hash of its 5-tuple)",
}


class Refused(ValueError):
    """An option xdsr cannot honour; the driver raises UnsupportedOptionError with str(self)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")


def _set(value: object) -> bool:
    """Whether a request really asks for something (Octavia sends neutral values too)."""
    return value not in (None, "", [], {}, False)


def group_name(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not GROUP_NAME.match(value):
        raise Refused(where, f"{value!r} is not an xdsr LB node group name (lower-case letters, digits, dashes)")
    return value


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
    # At creation Octavia passes the zone's metadata; elsewhere only its name.
    from_az = az_metadata(az) if isinstance(az, Mapping) else None
    if from_flavor and from_az and from_flavor != from_az:
        raise Refused(
            "flavor.lbn_group",
            f"the flavor asks for LB node group {from_flavor!r} but the availability zone is group {from_az!r}",
        )
    return from_flavor or from_az


def loadbalancer(lb: Obj) -> None:
    if not lb.get("vip_address"):
        raise Refused("loadbalancer.vip_address", l2dsr.VIP_REQUIRED)
    if _set(lb.get("additional_vips")):
        raise Refused("loadbalancer.additional_vips", l2dsr.ADDITIONAL_VIPS)
    if _set(lb.get("vip_sg_ids")):
        raise Refused("loadbalancer.vip_sg_ids", l2dsr.VIP_SG_IDS)
    lbn_group(lb)
    pools = {p.get("pool_id"): p for p in lb.get("pools") or [] if isinstance(p, Mapping)}
    for i, li in enumerate(lb.get("listeners") or []):
        listener(li, f"loadbalancer.listeners[{i}]")
        default = li.get("default_pool") or pools.get(li.get("default_pool_id"))
        if default:
            members_fit_port(default, li, f"loadbalancer.listeners[{i}].default_pool")
    for i, p in enumerate(lb.get("pools") or []):
        pool(p, f"loadbalancer.pools[{i}]")


def listener(li: Obj, where: str = "listener") -> None:
    protocol = li.get("protocol")
    if protocol not in l2dsr.LISTENER_PROTOCOLS:
        raise Refused(f"{where}.protocol", l2dsr.PROTOCOL_REASONS.get(str(protocol), f"{protocol} is not supported"))
    # Octavia fills tls_versions/tls_ciphers/alpn_protocols with its defaults
    # for every listener; they mean nothing without the TLS fields below,
    # which only TERMINATED_HTTPS listeners (refused above) may set.
    for name in (
        "default_tls_container_ref",
        "sni_container_refs",
        "client_ca_tls_container_ref",
        "client_crl_container_ref",
    ):
        if _set(li.get(name)):
            raise Refused(f"{where}.{name}", l2dsr.TLS)
    if li.get("client_authentication") not in (None, "NONE"):
        raise Refused(f"{where}.client_authentication", l2dsr.TLS)
    if _set(li.get("l7policies")):
        raise Refused(f"{where}.l7policies", l2dsr.L7)
    if _set(li.get("insert_headers")):
        raise Refused(f"{where}.insert_headers", l2dsr.INSERT_HEADERS)
    if _set(li.get("allowed_cidrs")):
        raise Refused(f"{where}.allowed_cidrs", l2dsr.ALLOWED_CIDRS)
    if li.get("connection_limit") not in (None, -1):
        raise Refused(f"{where}.connection_limit", l2dsr.CONNECTION_LIMIT)
    if _set(li.get("hsts_max_age")) or _set(li.get("hsts_include_subdomains")) or _set(li.get("hsts_preload")):
        raise Refused(f"{where}.hsts_max_age", l2dsr.HSTS)
    default = li.get("default_pool")
    if isinstance(default, Mapping) and default:
        pool(default, f"{where}.default_pool")
        if default.get("protocol") != protocol:
            raise Refused(f"{where}.default_pool.protocol", l2dsr.PROTOCOL_MISMATCH)
        members_fit_port(default, li, f"{where}.default_pool")


def pool(p: Obj, where: str = "pool") -> None:
    protocol = p.get("protocol")
    if protocol is not None and protocol not in l2dsr.POOL_PROTOCOLS:
        raise Refused(f"{where}.protocol", l2dsr.PROTOCOL_REASONS.get(str(protocol), f"{protocol} is not supported"))
    algorithm = p.get("lb_algorithm")
    if algorithm is not None and algorithm not in LB_ALGORITHMS:
        raise Refused(
            f"{where}.lb_algorithm", l2dsr.ALGORITHM_REASONS.get(str(algorithm), f"{algorithm} is not supported")
        )
    if _set(p.get("session_persistence")):
        raise Refused(f"{where}.session_persistence", l2dsr.SESSION_PERSISTENCE)
    for name in ("tls_enabled", "tls_container_ref", "ca_tls_container_ref", "crl_container_ref"):
        if _set(p.get(name)):
            raise Refused(f"{where}.{name}", l2dsr.TLS)
    for i, m in enumerate(p.get("members") or []):
        member(m, f"{where}.members[{i}]")
    hm = p.get("healthmonitor")
    if isinstance(hm, Mapping) and hm:
        healthmonitor(hm, f"{where}.healthmonitor", pool_protocol=protocol)


def member(m: Obj, where: str = "member") -> None:
    if _set(m.get("backup")):
        raise Refused(f"{where}.backup", l2dsr.BACKUP)
    if m.get("vnic_type") not in (None, "normal"):
        raise Refused(f"{where}.vnic_type", "only 'normal' members: the LB nodes reach members by MAC and VLAN")


def pool_fits_listener(p: Obj, li: Obj, where: str = "pool") -> None:
    """A pool that becomes a listener's default pool: same protocol, members on its port."""
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


def healthmonitor(hm: Obj, where: str = "healthmonitor", pool_protocol: object = None) -> None:
    kind = hm.get("type")
    if kind == "SCTP":
        raise Refused(f"{where}.type", "SCTP health monitors are not supported: xdsr serves no SCTP pools")
    if _set(hm.get("http_version")) or _set(hm.get("domain_name")):
        raise Refused(f"{where}.http_version", l2dsr.HM_HTTP_VERSION)
    delay, timeout = hm.get("delay"), hm.get("timeout")
    if isinstance(delay, int) and isinstance(timeout, int) and timeout > delay:
        raise Refused(f"{where}.timeout", f"{timeout} exceeds delay {delay}: a probe must end before the next")
    if pool_protocol == "UDP" and kind is not None and kind not in UDP_POOL_MONITORS:
        raise Refused(f"{where}.type", f"the pool is UDP, so only {', '.join(UDP_POOL_MONITORS)} monitors apply")
    if pool_protocol == "TCP" and kind == "UDP-CONNECT":
        raise Refused(f"{where}.type", "UDP-CONNECT applies to UDP pools only")
