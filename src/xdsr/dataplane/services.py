"""From the shared service schema to the data plane's Services.

The operator sends its nodes `xdsr.model.agent` services, and `xdsr dp apply`
reads the same schema from a file; both come through here, so the agent and
the command accept and refuse exactly the same services, and build the same
tables from them. Pydantic checked each value's type; this checks what each
value must be (model/checks.py, the one implementation of each check) and
what spans fields, naming every bad field the way the state wrote it:
``services[2].backends[0].mac``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from xdsr.dataplane import abi
from xdsr.dataplane.model import PROTOCOLS, Backend, Service, ServiceKey
from xdsr.maglev import default_table_size
from xdsr.model import checks
from xdsr.model.agent import RuleBackend, RuleService


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidState(ValueError):
    """The services cannot be applied; nothing was changed."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


SEG_TYPES = {"vlan": abi.SegType.VLAN, "vxlan": abi.SegType.VXLAN, "geneve": abi.SegType.GENEVE}


def service_key(rule: RuleService) -> ServiceKey:
    vip = checks.ip_address(rule.vip)  # parsed already (the schema's Address): taken as it is
    return ServiceKey(vip, rule.port, PROTOCOLS[rule.protocol], SEG_TYPES[rule.segment.type], rule.segment.id)


def report_id(rule: RuleService) -> str:
    """What the service is reported as: its id, else its key."""
    return rule.id if rule.id is not None else str(service_key(rule))


# A state is checked, then built, and sent again and again with the same
# members: each MAC is checked and normalized once, not at every step.
_unicast_mac = functools.lru_cache(maxsize=1 << 16)(checks.unicast_mac)


def identity(member: RuleBackend) -> str | None:
    """The member's Maglev identity: its id, else "<mac>@<vlan>" ("<mac>@vni<VNI>"
    behind a tunnel), as model.Backend.identity; None: neither is given."""
    if member.id is not None:
        return member.id
    if member.mac is None:
        return None
    try:
        mac = _unicast_mac(member.mac)
    except ValueError:
        return None
    return f"{mac}@vni{member.vni}" if member.vni else f"{mac}@{member.vlan}"


def _check(errors: list[FieldError], field: str, check: Callable[[], object]) -> None:
    try:
        check()
    except ValueError as exc:
        errors.append(FieldError(field, str(exc)))


def _member_errors(where: str, j: int, m: RuleBackend) -> list[FieldError]:
    """The problems of member j of the service at `where` (named only when
    there is one: a whole group's members are checked at once)."""
    errors: list[FieldError] = []

    def at(name: str) -> str:
        return f"{where}.backends[{j}].{name}"

    if m.id == "":
        errors.append(FieldError(at("id"), "must not be empty"))
    if m.weight > checks.MAX_WEIGHT:
        errors.append(FieldError(at("weight"), f"{m.weight} is above {checks.MAX_WEIGHT}"))
    if m.mac is not None:
        try:
            _unicast_mac(m.mac)
        except ValueError as exc:
            errors.append(FieldError(at("mac"), str(exc)))
    else:
        if m.address is None:
            errors.append(FieldError(at("address"), "required when mac is null (the agent resolves it)"))
        if m.id is None:
            errors.append(FieldError(at("id"), "required when mac is null (it is the member's identity)"))
    if m.address is not None:
        try:
            checks.member_address(m.address)
        except ValueError as exc:
            errors.append(FieldError(at("address"), str(exc)))
    return errors


def _service_errors(where: str, s: RuleService, known: Known | None = None) -> list[FieldError]:
    errors: list[FieldError] = []
    if s.id == "":
        errors.append(FieldError(f"{where}.id", "must not be empty"))
    _check(errors, f"{where}.vip", lambda: checks.vip(s.vip))
    # A frame goes out the way it came: re-encapsulated to a tunnel endpoint
    # when it came through one, on a VLAN when it came on one. Mixing them
    # would mean adding or removing 50+ bytes of headers per frame (and the
    # MTU questions that come with it): refused.
    overlay = s.segment.overlay
    for j, m in enumerate(s.backends):
        if not overlay and m.vni is None and m.vtep is None:
            continue  # the common case, named only when wrong
        at = f"{where}.backends[{j}]"
        if overlay:
            for name in ("vni", "vtep"):
                if getattr(m, name) is None:
                    errors.append(FieldError(f"{at}.{name}", f"required for a member of a {s.segment.type} service"))
            if m.vlan:
                errors.append(
                    FieldError(f"{at}.vlan", f"must be 0 for a member of a {s.segment.type} service (it has a vni)")
                )
            if m.vtep is not None:
                _check(errors, f"{at}.vtep", lambda v=m.vtep: checks.unicast_address(v, "a tunnel endpoint"))
        elif m.vni is not None or m.vtep is not None:
            errors.append(
                FieldError(at, "vni and vtep are for members of a vxlan or geneve service; this one is on a vlan")
            )
    if len(s.backends) > abi.MAX_BACKENDS:
        errors.append(FieldError(f"{where}.backends", f"{len(s.backends)} members; at most {abi.MAX_BACKENDS}"))
    seen: dict[str, int] = {}
    for j, m in enumerate(s.backends):
        if known is None or not known(m):
            errors += _member_errors(where, j, m)
        ident = identity(m)
        if ident is None:
            continue
        if ident in seen:
            # An id the file gave is at fault; else the MAC and VLAN repeat.
            if m.id is not None:
                errors.append(FieldError(f"{where}.backends[{j}].id", f"{ident!r} is already backends[{seen[ident]}]"))
            else:
                errors.append(FieldError(f"{where}.backends[{j}]", f"duplicates backends[{seen[ident]}] ({ident})"))
        seen.setdefault(ident, j)
    if s.table_size is not None:
        weighted = sum(1 for m in s.backends if m.weight > 0)
        _check(
            errors,
            f"{where}.table_size",
            lambda: checks.table_holds(checks.table_size(s.table_size), weighted),  # type: ignore[arg-type]
        )
    return errors


# Whether this very member passed _member_errors before (its problems depend
# on it alone): the operator checks a changed load balancer's new members only.
Known = Callable[[RuleBackend], bool]


def errors(services: Iterable[RuleService], known: Known | None = None) -> list[FieldError]:
    """Every problem of these services, each naming its field; [] if they can be applied."""
    out: list[FieldError] = []
    ids: dict[str, int] = {}
    keys: dict[ServiceKey, int] = {}
    for i, s in enumerate(services):
        where = f"services[{i}]"
        out += _service_errors(where, s, known)
        if s.id is not None:
            if s.id in ids:
                out.append(FieldError(f"{where}.id", f"{s.id!r} is already services[{ids[s.id]}]"))
            ids.setdefault(s.id, i)
        key = service_key(s)
        if key in keys:
            out.append(FieldError(where, f"{key} is already services[{keys[key]}]"))
        keys.setdefault(key, i)
    return out


def check(services: Iterable[RuleService]) -> None:
    """Raise InvalidState listing every problem, or return."""
    if found := errors(services):
        raise InvalidState(found)


# Asked for the MAC of a member given without one; None: not known (yet).
MacOf = Callable[[RuleBackend], "str | None"]
# Asked for the underlay next hop's MAC towards a tunnel endpoint (the outer
# destination MAC of frames to members behind it); None: not known (yet).
HopOf = Callable[[checks.IPAddress], "str | None"]


def _unknown(_what: object) -> str | None:
    return None


def to_service(
    rule: RuleService, mac_of: MacOf = _unknown, hop_of: HopOf = _unknown
) -> tuple[Service, tuple[str, ...]]:
    """A checked service as the data plane holds it, and the identities of
    the members left out because their MAC (or, behind a tunnel, the next
    hop towards their endpoint) is not known.

    The table size is derived from *every* weighted member, known or not,
    so that a member resolving later moves only its own share of the slots
    (Maglev) instead of resizing the table and moving nearly all of them, and
    so that every node of a group picks the same size whatever it has
    resolved yet."""
    backends = []
    unresolved = []
    for m in rule.backends:
        mac = _unicast_mac(m.mac) if m.mac is not None else mac_of(m)
        if mac is None:
            unresolved.append(m.id or "")
            continue
        if m.vni is None or m.vtep is None:
            backends.append(Backend(mac, m.vlan, m.weight, m.id or ""))
            continue
        hop = hop_of(m.vtep)
        if hop is None:
            unresolved.append(m.id or identity(m) or "")
            continue
        backends.append(
            Backend(
                mac, 0, m.weight, m.id or "", vni=m.vni, vtep=ipaddress.ip_address(m.vtep), hop_mac=_unicast_mac(hop)
            )
        )
    weighted = sum(1 for m in rule.backends if m.weight > 0)
    size = rule.table_size or default_table_size(max(weighted, 1))
    return Service(service_key(rule), size, tuple(backends)), tuple(unresolved)
