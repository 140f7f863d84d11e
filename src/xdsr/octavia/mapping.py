"""Octavia's objects → the xdsr API's request bodies (xdsr.api.schemas), strictly.

Inputs are octavia-lib provider objects as plain dicts (`*_id` naming:
`loadbalancer_id`, `listener_id`, `pool_id`, `member_id`,
`healthmonitor_id`). Every xdsr object takes Octavia's id (the API server
accepts client-chosen ids from admin tokens), so nothing maps ids and the
driver keeps no state. Pure functions.

Strict: every attribute of Octavia's is carried through under its own name,
so that the xdsr schema judges it — an attribute xdsr refuses (TLS,
session persistence, L7 policies, backup members, ...) reaches the schema's
refusal and its L2DSR reason, and one xdsr does not know is refused as
unknown. Left out are only what is not the object's own (NOT_OWN: links to
its parents, which xdsr expresses by nesting; Octavia's copies of the
secrets behind a certificate reference, whose reference is carried), and
the values Octavia fills in itself on every object (OCTAVIA_DEFAULTS), which
ask for nothing. What Octavia expresses through its flavor and availability
zone (the LB node group) is the driver's to decide (validate.lbn_group).

Attributes xdsr stores but Octavia has no notion of come from elsewhere:
`vip_segment` and a member's `mac_address`/`segment`/`vtep_address` from
Neutron when the agent looks them up (else the xdsr API server maps `vip_subnet_id`/`subnet_id`
to a segment with its networks file and the LB nodes resolve MACs), and
`lbn_group` from the flavor or availability zone metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from xdsr.api.l2dsr import HTTP_MONITORS

Obj = Mapping[str, Any]
Body = dict[str, Any]

# What a member needs beyond Octavia's attributes: xdsr's member attributes
# (mac_address, segment, vtep_address) as far as they are known.
MemberExtra = Callable[[Obj], Mapping[str, Any]]

# Octavia's name of each kind's id; in xdsr it is `id`.
ID_KEY = {
    "loadbalancer": "loadbalancer_id",
    "listener": "listener_id",
    "pool": "pool_id",
    "member": "member_id",
    "healthmonitor": "healthmonitor_id",
}
# Not the object's own: its parents (xdsr nests children in them; a child's
# project is its load balancer's), and the certificate data Octavia read
# from a *_container_ref (the reference is carried and refused on its own).
NOT_OWN = {
    "loadbalancer": frozenset({"flavor"}),  # the driver's: validate.lbn_group
    "listener": frozenset(
        {
            "loadbalancer_id",
            "project_id",
            "default_tls_container_data",
            "sni_container_data",
            "client_ca_tls_container_data",
            "client_crl_container_data",
        }
    ),
    "pool": frozenset(
        {
            "loadbalancer_id",
            "listener_id",
            "project_id",
            "tls_container_data",
            "ca_tls_container_data",
            "crl_container_data",
        }
    ),
    "member": frozenset({"pool_id", "project_id"}),
    "healthmonitor": frozenset({"pool_id", "project_id"}),
}
# Values Octavia fills in on every object, whatever the user asked: TLS
# versions, ciphers and ALPN protocols default on every listener and pool
# (they mean nothing without a certificate, which is refused), every member
# is a "normal" vNIC, and an update may reset a TCP monitor's HTTP
# attributes to Octavia's HTTP defaults.
OCTAVIA_DEFAULTS = {
    "listener": frozenset({"tls_versions", "tls_ciphers", "alpn_protocols"}),
    "pool": frozenset({"tls_versions", "tls_ciphers", "alpn_protocols"}),
}
HTTP_ONLY = ("http_method", "url_path", "expected_codes")


def _own(obj: Obj, kind: str, also: frozenset[str] = frozenset()) -> Body:
    """The object's own attributes under xdsr's names; unset (None) ones left out."""
    skip = NOT_OWN[kind] | OCTAVIA_DEFAULTS.get(kind, frozenset()) | also
    out: Body = {}
    for key, value in obj.items():
        if value is None or key in skip:
            continue
        out["id" if key == ID_KEY[kind] else key] = value
    return out


def _none(_: Obj) -> Mapping[str, Any]:
    return {}


def loadbalancer(
    lb: Obj,
    *,
    lbn_group: str | None = None,
    vip_segment: dict[str, Any] | None = None,
    member_extra: MemberExtra = _none,
    skip: frozenset[str] = frozenset(),
) -> Body:
    """The fully populated create of a load balancer and everything under it
    (the body of one write of the whole tree). `skip`: ids of objects being
    deleted (Octavia's tree shows them until the deletion is reported)."""
    body = _own(lb, "loadbalancer", frozenset({"listeners", "pools"}))
    # At creation Octavia hands the zone's metadata (the driver's to judge), elsewhere its name.
    if not isinstance(lb.get("availability_zone"), str):
        body.pop("availability_zone", None)
    if lbn_group is not None:
        body["lbn_group"] = lbn_group
    if vip_segment is not None:
        body["vip_segment"] = vip_segment
    pools = [p for p in lb.get("pools") or [] if p and p.get("pool_id") not in skip]
    body["pools"] = [pool(p, member_extra=member_extra, skip=skip) for p in pools]
    pool_ids = {p["pool_id"] for p in pools}
    body["listeners"] = []
    for li in lb.get("listeners") or []:
        if not li or li.get("listener_id") in skip:
            continue
        item = listener(li)
        if item.get("default_pool_id") not in pool_ids:
            item.pop("default_pool_id", None)  # its pool is being deleted
        body["listeners"].append(item)
    return body


def listener(li: Obj) -> Body:
    body = _own(li, "listener")
    # A default pool Octavia also names by id is mapped on its own (one of
    # the load balancer's pools, or checked by the driver as such).
    if body.get("default_pool_id"):
        body.pop("default_pool", None)
    elif isinstance(body.get("default_pool"), Mapping):
        body["default_pool"] = pool(body["default_pool"])
    return body


def pool(p: Obj, *, member_extra: MemberExtra = _none, skip: frozenset[str] = frozenset()) -> Body:
    body = _own(p, "pool", frozenset({"members", "healthmonitor"}))
    body["members"] = [member(m, member_extra) for m in p.get("members") or [] if m and m.get("member_id") not in skip]
    hm = p.get("healthmonitor")
    if hm and hm.get("healthmonitor_id") not in skip:
        body["healthmonitor"] = healthmonitor(hm)
    return body


def member(m: Obj, extra: MemberExtra = _none) -> Body:
    body = _own(m, "member")
    if body.get("vnic_type") == "normal":
        del body["vnic_type"]
    # Only what is known: without Neutron the LB nodes resolve the MAC (and
    # an overlay member's tunnel endpoint) and the API server fills the
    # segment from subnet_id.
    body.update((k, v) for k, v in extra(m).items() if v is not None)
    return body


def healthmonitor(hm: Obj) -> Body:
    body = _own(hm, "healthmonitor")
    if body.get("type") not in HTTP_MONITORS:
        for name in HTTP_ONLY:
            body.pop(name, None)
    return body
