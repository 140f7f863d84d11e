"""From the operator's DesiredState to the data plane's Services, on a node.

The services themselves are checked and built by xdsr.dataplane.services,
the same code `xdsr dp apply` uses; what is the agent's own is this node's
capacity and the MACs it resolves for members given by address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from xdsr.agent.resolver import NeighborKey
from xdsr.dataplane import services
from xdsr.dataplane.model import Service
from xdsr.dataplane.services import FieldError, InvalidState
from xdsr.model.agent import DesiredState, RuleBackend

__all__ = ["Built", "FieldError", "InvalidState", "build", "needed_neighbors", "validate"]


def neighbor_key(member: RuleBackend) -> NeighborKey | None:
    """What must be resolved for this member, or None (its MAC is given)."""
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
    """The services of a validated state, with resolved MACs filled in
    (services.to_service: the member id is the Maglev identity, and the
    table is sized for every weighted member, resolved or not)."""

    def resolved(m: RuleBackend) -> str | None:
        nk = neighbor_key(m)
        return mac_of(nk) if nk is not None else None

    out = []
    for s in state.services:
        service, unresolved = services.to_service(s, resolved)
        out.append(Built(services.report_id(s), service, unresolved))
    return out
