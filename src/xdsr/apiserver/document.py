"""A load balancer's document: finding its objects, and the rules that hold
between them (ports, default pools, members, health monitors, unique ids).

Every check raises the ApiError that refuses the request; none changes the
document. They run inside update_doc's compare-and-swap loop, against the
freshest document.
"""

from __future__ import annotations

from collections.abc import Iterable

from xdsr.api import l2dsr
from xdsr.apiserver.errors import bad_request, conflict
from xdsr.model.agent import Segment
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool

# --- lookups -----------------------------------------------------------------------


def find_listener(doc: LoadBalancer, listener_id: str) -> Listener | None:
    return next((li for li in doc.listeners if li.id == listener_id), None)


def find_pool(doc: LoadBalancer, pool_id: str) -> Pool | None:
    return next((p for p in doc.pools if p.id == pool_id), None)


def find_member(pool: Pool, member_id: str) -> Member | None:
    return next((m for m in pool.members if m.id == member_id), None)


def find_hm(doc: LoadBalancer, hm_id: str) -> HealthMonitor | None:
    return next((h for h in doc.healthmonitors if h.id == hm_id), None)


def pool_listeners(doc: LoadBalancer, pool_id: str) -> list[Listener]:
    return [li for li in doc.listeners if li.default_pool_id == pool_id]


# --- rules -------------------------------------------------------------------------


def check_unique_ids(doc: LoadBalancer) -> None:
    """No two objects of a kind share an id within the document (client-chosen
    ids can collide; the API server's checks against other documents run
    before the write)."""
    groups = {
        "listener": [li.id for li in doc.listeners],
        "pool": [p.id for p in doc.pools],
        "member": [m.id for p in doc.pools for m in p.members],
        "health monitor": [h.id for h in doc.healthmonitors],
    }
    for kind, ids in groups.items():
        seen: set[str] = set()
        for obj_id in ids:
            if obj_id in seen:
                raise conflict(None, f"{kind} id {obj_id} is taken")
            seen.add(obj_id)


def check_port_free(doc: LoadBalancer, li: Listener, where: str) -> None:
    for other in doc.listeners:
        if other.id != li.id and other.protocol == li.protocol and other.protocol_port == li.protocol_port:
            raise conflict(
                f"{where}.protocol_port",
                f"listener {other.id} of load balancer {doc.id} already serves {li.protocol} port {li.protocol_port}",
            )


def check_attach(doc: LoadBalancer, li: Listener, pool: Pool, field: str) -> None:
    """May `pool` become the default pool of `li`?"""
    if pool.protocol != li.protocol:
        raise bad_request(
            field,
            f"pool {pool.id} is {pool.protocol} but listener {li.id} is {li.protocol}: {l2dsr.PROTOCOL_MISMATCH}",
        )
    for other in pool_listeners(doc, pool.id):
        if other.id != li.id:
            # Octavia's rule too: a pool is the default pool of at most one listener.
            raise conflict(field, f"pool {pool.id} is already the default pool of listener {other.id}")
    ports = sorted({m.protocol_port for m in pool.members if m.protocol_port != li.protocol_port})
    if ports:
        raise bad_request(
            field,
            f"members of pool {pool.id} use protocol_port {', '.join(map(str, ports))} but listener {li.id} "
            f"uses {li.protocol_port}: {l2dsr.PORT_TRANSLATION}",
        )


def check_member(doc: LoadBalancer, pool: Pool, m: Member, where: str) -> None:
    check_members(doc, pool, [(m, where)], existing=pool.members)


def check_members(
    doc: LoadBalancer, pool: Pool, new: list[tuple[Member, str]], existing: list[Member] | None = None
) -> None:
    """Members about to join pool (with where each is in the request): their
    port must be the listeners', and no two may share address and port.
    One pass with a set, so that a pool of hundreds is checked in linear time."""
    listeners = pool_listeners(doc, pool.id)
    taken = {(str(o.address), o.protocol_port): o.id for o in existing or []}
    for m, where in new:
        for li in listeners:
            if li.protocol_port != m.protocol_port:
                raise bad_request(
                    f"{where}.protocol_port",
                    f"{m.protocol_port} differs from protocol_port {li.protocol_port} of listener {li.id}, "
                    f"whose default pool is {pool.id}: {l2dsr.PORT_TRANSLATION}",
                )
        key = (str(m.address), m.protocol_port)
        other = taken.get(key)
        if other is not None and other != m.id:
            raise conflict(where, f"member {other} of pool {pool.id} already is {m.address} port {m.protocol_port}")
        taken[key] = m.id


def _named(seg: Segment) -> str:
    return f"{seg.type} {seg.id}" if seg.type != "vlan" else ("untagged" if seg.id == 0 else f"VLAN {seg.id}")


def check_segments(vip: Segment, placed: Iterable[tuple[Member, str]]) -> None:
    """Members written by a request (with where each is in it), their
    segments filled in from the networks file: each must be reachable the
    way the VIP's frames arrive (a VLAN for a VLAN, the same overlay for an
    overlay), an overlay member has its (inner) MAC, and an overlay member,
    and only one, has a tunnel endpoint."""
    for m, where in placed:
        seg = m.segment or vip
        if seg.type != vip.type and (seg.overlay or vip.overlay):
            raise bad_request(
                f"{where}.segment",
                f"member {m.address} is on {_named(seg)} but the VIP is on {_named(vip)}: {l2dsr.MIXED_SEGMENTS}",
            )
        if seg.overlay and m.mac_address is None:
            raise bad_request(f"{where}.mac_address", l2dsr.INNER_MAC_REQUIRED)
        if seg.overlay and m.vtep_address is None:
            raise bad_request(f"{where}.vtep_address", l2dsr.VTEP_REQUIRED)
        if m.vtep_address is not None and not seg.overlay:
            raise bad_request(f"{where}.vtep_address", l2dsr.VTEP_ON_VLAN)


def check_hm(pool: Pool, hm: HealthMonitor, where: str) -> None:
    if pool.protocol == "UDP" and hm.type not in l2dsr.UDP_POOL_MONITORS:
        raise bad_request(
            f"{where}.type",
            f"pool {pool.id} is UDP, so only {', '.join(l2dsr.UDP_POOL_MONITORS)} health monitors apply",
        )
    if pool.protocol != "UDP" and hm.type in l2dsr.UDP_ONLY_MONITORS:
        raise bad_request(f"{where}.type", f"{hm.type} applies to UDP pools only; pool {pool.id} is {pool.protocol}")
    if hm.timeout > hm.delay:
        raise bad_request(f"{where}.timeout", f"{hm.timeout} exceeds delay {hm.delay}: a probe ends before the next")
    if hm.type in l2dsr.HTTP_MONITORS:
        return
    for name in ("http_method", "url_path", "expected_codes"):
        if getattr(hm, name) is not None:
            raise bad_request(f"{where}.{name}", f"applies to HTTP and HTTPS health monitors only, not {hm.type}")


def http_defaults(hm: HealthMonitor) -> None:
    # Octavia fills these for HTTP(S) monitors; other types have none.
    if hm.type in l2dsr.HTTP_MONITORS:
        hm.http_method = hm.http_method or "GET"
        hm.url_path = hm.url_path or "/"
        hm.expected_codes = hm.expected_codes or "200"
