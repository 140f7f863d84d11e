"""From the operator's DesiredState to the data plane's Services, on a node.

The services themselves are checked and built by xdsr.dataplane.services,
the same code `xdsr dp apply` uses; what is the agent's own is this node's
capacity and the MACs it resolves for members given by address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xdsr.agent.resolver import NeighborKey
from xdsr.dataplane import services
from xdsr.dataplane.model import Service, ServiceKey
from xdsr.dataplane.services import FieldError, InvalidState
from xdsr.model.agent import DesiredState, RuleBackend, RuleService, owner

__all__ = [
    "Built",
    "FieldError",
    "InvalidState",
    "build",
    "build_services",
    "by_owner",
    "needed_neighbors",
    "validate",
    "validate_delta",
]


# The next hop towards members' tunnel endpoints: untagged on the trunk,
# the endpoint itself, or the configured underlay router (routed underlay).
UNDERLAY_VLAN = 0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _hop_key(vtep: IPAddress, underlay_hop: IPAddress | None) -> NeighborKey:
    return (UNDERLAY_VLAN, underlay_hop or vtep)


def neighbor_key(member: RuleBackend, underlay_hop: IPAddress | None = None) -> NeighborKey | None:
    """What must be resolved for this member, or None (its MAC is given).

    Behind a tunnel (vni and vtep set) the inner MAC comes with the member
    (Neutron's port MAC: the node is on no tenant network to ask on), and
    what the node resolves is the underlay next hop towards its endpoint."""
    if member.vni is not None and member.vtep is not None:
        return _hop_key(member.vtep, underlay_hop)
    if member.mac is not None or member.address is None:
        return None
    return (member.vlan, ipaddress.ip_address(member.address))


def validate(state: DesiredState, max_services: int) -> None:
    """Raise InvalidState listing every problem, or return."""
    errors: list[FieldError] = []
    if len(state.services) > max_services:
        errors.append(
            FieldError("services", f"{len(state.services)} services; this node's data plane holds {max_services}")
        )
    errors += services.errors(state.services)
    if errors:
        raise InvalidState(errors)


def validate_delta(
    state: DesiredState,
    held: Mapping[str, list[RuleService]],
    held_count: int,
    keys: Mapping[ServiceKey, str],
    max_services: int,
) -> None:
    """Raise InvalidState listing every problem of a delta against what the
    node holds (`held`: services by load balancer, `held_count` of them;
    `keys`: the service id serving each key), or return. Only the changed
    services are checked (the others were checked when they came), so this
    costs what the delta carries."""
    errors: list[FieldError] = []
    if state.services:
        errors.append(FieldError("services", "must be empty in a delta (base is set): the changes go in changes"))
    where: list[str] = []
    new: list[RuleService] = []
    for lb, ss in state.changes.items():
        for j, s in enumerate(ss):
            where.append(f"changes.{lb}[{j}]")
            new.append(s)
            if s.id is None or owner(s.id) != lb:
                errors.append(FieldError(f"changes.{lb}[{j}].id", f"must be {lb!r}/<listener id> in a delta"))
    for e in services.errors(new):
        # services.errors names them services[i]; say where they are in the body.
        head, sep, rest = e.field.partition("]")
        i = int(head.removeprefix("services[")) if sep and head.startswith("services[") else -1
        errors.append(FieldError(where[i] + rest, e.message) if i >= 0 else e)
    for i, s in enumerate(new):
        other = keys.get(services.service_key(s))
        if other is not None and owner(other) not in state.changes:
            errors.append(FieldError(where[i], f"{services.service_key(s)} is already served by {other!r}"))
    count = held_count - sum(len(held.get(lb, ())) for lb in state.changes) + len(new)
    if count > max_services:
        errors.append(FieldError("changes", f"{count} services; this node's data plane holds {max_services}"))
    if errors:
        raise InvalidState(errors)


def by_owner(rules: Iterable[RuleService]) -> dict[str, list[RuleService]]:
    """Services grouped by the load balancer they belong to (the delta protocol's unit)."""
    out: dict[str, list[RuleService]] = {}
    for s in rules:
        out.setdefault(owner(s.id), []).append(s)
    return out


def needed_neighbors(state: DesiredState, underlay_hop: IPAddress | None = None) -> set[NeighborKey]:
    return needed_by(state.services, underlay_hop)


def needed_by(rules: Iterable[RuleService], underlay_hop: IPAddress | None = None) -> set[NeighborKey]:
    return {k for s in rules for m in s.backends if (k := neighbor_key(m, underlay_hop)) is not None}


@dataclass(frozen=True)
class Built:
    """A service as it goes into the data plane, and what was left out."""

    rule_id: str
    service: Service
    unresolved: tuple[str, ...]  # member ids without a MAC: not in the table

    @property
    def active_backends(self) -> int:
        return self.service.active_backends


def build(
    state: DesiredState, mac_of: Callable[[NeighborKey], str | None], underlay_hop: IPAddress | None = None
) -> list[Built]:
    """The services of a validated state, with resolved MACs filled in
    (services.to_service: the member id is the Maglev identity, and the
    table is sized for every weighted member, resolved or not)."""

    return build_services(state.services, mac_of, underlay_hop)


def build_services(
    rules: Iterable[RuleService], mac_of: Callable[[NeighborKey], str | None], underlay_hop: IPAddress | None = None
) -> list[Built]:
    """build() for some services (those a delta changes)."""

    def resolved(m: RuleBackend) -> str | None:
        if m.vni is not None:
            return None  # an inner MAC is given, never resolved (neighbor_key)
        nk = neighbor_key(m)
        return mac_of(nk) if nk is not None else None

    def hop_of(vtep: IPAddress) -> str | None:
        return mac_of(_hop_key(vtep, underlay_hop))

    out = []
    for s in rules:
        service, unresolved = services.to_service(s, resolved, hop_of)
        out.append(Built(services.report_id(s), service, unresolved))
    return out
