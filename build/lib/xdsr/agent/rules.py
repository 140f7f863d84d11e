"""From the operator's DesiredState to the data plane's Services.

Pydantic checked each field on its own (xdsr.model.agent); this checks what
spans fields and what the data plane needs, so that a state that passes is
one apply() accepts. Every error names its field the way the operator wrote
it: ``services[2].backends[0].mac``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from xdsr.agent.resolver import NeighborKey
from xdsr.dataplane import abi
from xdsr.dataplane.model import MAX_TABLE_SIZE, PROTOCOLS, Backend, Service, ServiceKey, normalize_mac
from xdsr.maglev import default_table_size, is_prime
from xdsr.model.agent import DesiredState, RuleBackend, RuleService

MAX_WEIGHT = 2**32 - 1  # the kernel's backend weight is a u32


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidState(ValueError):
    """The desired state cannot be applied; nothing was changed."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def service_key(rule: RuleService) -> ServiceKey:
    vip = ipaddress.ip_address(rule.vip)
    return ServiceKey(vip, rule.port, PROTOCOLS[rule.protocol], abi.SegType.VLAN, rule.segment.id)


def neighbor_key(member: RuleBackend) -> NeighborKey | None:
    """What must be resolved for this member, or None (its MAC is given)."""
    if member.mac is not None or member.address is None:
        return None
    return (member.vlan, ipaddress.ip_address(member.address))


def _bad_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        return f"{addr} is not a unicast address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return f"{addr} is IPv4-mapped: write the IPv4 address"
    if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"{addr} is the broadcast address"
    return None


def _member_errors(where: str, m: RuleBackend) -> list[FieldError]:
    errors = []
    if not m.id:
        errors.append(FieldError(f"{where}.id", "must not be empty"))
    if m.weight > MAX_WEIGHT:
        errors.append(FieldError(f"{where}.weight", f"{m.weight} is above {MAX_WEIGHT}"))
    if m.mac is not None:
        try:
            mac = normalize_mac(m.mac)
        except ValueError as exc:
            errors.append(FieldError(f"{where}.mac", str(exc)))
        else:
            if int(mac[:2], 16) & 1:
                errors.append(FieldError(f"{where}.mac", f"{m.mac!r} is a multicast/broadcast address"))
            elif mac == "00:00:00:00:00:00":
                errors.append(FieldError(f"{where}.mac", f"{m.mac!r} is the zero address"))
    elif m.address is None:
        errors.append(FieldError(f"{where}.address", "required when mac is null (the agent resolves it)"))
    if m.address is not None and (why := _bad_address(ipaddress.ip_address(m.address))):
        errors.append(FieldError(f"{where}.address", why))
    return errors


def _service_errors(i: int, s: RuleService) -> list[FieldError]:
    where = f"services[{i}]"
    errors = []
    if not s.id:
        errors.append(FieldError(f"{where}.id", "must not be empty"))
    if why := _bad_address(ipaddress.ip_address(s.vip)):
        errors.append(FieldError(f"{where}.vip", why))
    if len(s.backends) > abi.MAX_BACKENDS:
        errors.append(FieldError(f"{where}.backends", f"{len(s.backends)} members; at most {abi.MAX_BACKENDS}"))
    ids: dict[str, int] = {}
    for j, m in enumerate(s.backends):
        errors += _member_errors(f"{where}.backends[{j}]", m)
        if m.id in ids:
            errors.append(FieldError(f"{where}.backends[{j}].id", f"{m.id!r} is already backends[{ids[m.id]}]"))
        ids.setdefault(m.id, j)
    if s.table_size is not None:
        active = sum(1 for m in s.backends if m.weight > 0)
        if not 2 <= s.table_size <= MAX_TABLE_SIZE:
            errors.append(FieldError(f"{where}.table_size", f"{s.table_size} is outside 2..{MAX_TABLE_SIZE}"))
        elif not is_prime(s.table_size):
            errors.append(FieldError(f"{where}.table_size", f"{s.table_size} is not prime (Maglev needs a prime)"))
        elif s.table_size < active:
            errors.append(FieldError(f"{where}.table_size", f"{s.table_size} is below the {active} weighted members"))
    return errors


def validate(state: DesiredState, max_services: int) -> None:
    """Raise InvalidState listing every problem, or return."""
    errors: list[FieldError] = []
    if len(state.services) > max_services:
        errors.append(
            FieldError("services", f"{len(state.services)} services; this node's data plane holds {max_services}")
        )
    ids: dict[str, int] = {}
    keys: dict[ServiceKey, int] = {}
    for i, s in enumerate(state.services):
        errors += _service_errors(i, s)
        if s.id in ids:
            errors.append(FieldError(f"services[{i}].id", f"{s.id!r} is already services[{ids[s.id]}]"))
        ids.setdefault(s.id, i)
        key = service_key(s)
        if key in keys:
            errors.append(FieldError(f"services[{i}]", f"{key} is already services[{keys[key]}]"))
        keys.setdefault(key, i)
    if errors:
        raise InvalidState(errors)


def needed_neighbors(state: DesiredState) -> set[NeighborKey]:
    return {k for s in state.services for m in s.backends if (k := neighbor_key(m)) is not None}


@dataclass(frozen=True)
class Built:
    """A service as it goes into the data plane, and what was left out."""

    rule_id: str
    service: Service
    unresolved: tuple[str, ...]  # member ids without a MAC: not in the table

    @property
    def active_backends(self) -> int:
        return self.service.active_backends


def build(state: DesiredState, mac_of: Callable[[NeighborKey], str | None]) -> list[Built]:
    """The services of a validated state, with resolved MACs filled in.

    The table size is derived from *every* weighted member, resolved or not,
    so that a member resolving later moves only its own share of the slots
    (Maglev) instead of resizing the table and moving nearly all of them, and
    so that every node of a group picks the same size whatever it has
    resolved yet. The member id is the Maglev identity: a member whose MAC
    changes keeps its slots."""
    out = []
    for s in state.services:
        backends = []
        unresolved = []
        for m in s.backends:
            if m.mac is not None:
                mac: str | None = normalize_mac(m.mac)
            else:
                nk = neighbor_key(m)
                mac = mac_of(nk) if nk is not None else None
            if mac is None:
                unresolved.append(m.id)
                continue
            backends.append(Backend(mac, m.vlan, m.weight, m.id))
        weighted = sum(1 for m in s.backends if m.weight > 0)
        size = s.table_size or default_table_size(max(weighted, 1))
        out.append(Built(s.id, Service(service_key(s), size, tuple(backends)), tuple(unresolved)))
    return out
