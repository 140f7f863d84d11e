"""What the operator sends to an LB node's agent, and what the agent reports.

PUT /v1/state with a DesiredState either replaces everything the node
forwards (a full state: `services`) or changes what it holds at generation
`base` (a delta: `changes`, per load balancer the services it has now). The
agent answers with its AgentState once applied; after a delta, the report
covers only the load balancers the delta named (`partial`). Generations only
grow within an epoch (the stream of one group's generations): an older
generation than the applied one is refused (409), the same one is a no-op,
so retries are safe. A delta whose base or epoch is not what the node holds
is refused (409, with the node's generation and epoch): the operator then
sends the full state. A full state of another epoch is always taken.

A full state too large for one body (the agent reads at most 64 MiB) is
sent in `parts` bodies, numbered by `part` from 0, each with some of the
services and the same generation and epoch. The agent keeps the parts it
has been sent, in order (202 Accepted; nothing applied), and the last one
completes the full state, which is then taken as if it had come in one
body: checked whole, applied in one atomic apply, refused or a no-op by the
same rules. A part out of order, or of another generation or epoch than
those being received, is refused (409) and the parts received are dropped:
the operator starts again from part 0. A state in one body drops them too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from xdsr.model import checks
from xdsr.model.checks import Address, SegmentType, VlanId, Vni


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Segment(_Model):
    """Where a tenant's frames are: a VLAN (id = VID, 0 = untagged) or an
    overlay reached through tunnel endpoints (VXLAN or Geneve, id = VNI).
    Frozen: one segment is shared by the members, documents and copies
    that name it (a copy of a stored document need not copy it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: SegmentType = "vlan"
    id: Annotated[int, Field(ge=0, le=checks.MAX_VNI)] = 0

    @field_validator("id")
    @classmethod
    def _id_fits_type(cls, v: int, info: ValidationInfo) -> int:
        # `type` is validated first (field order); absent when it was refused.
        if "type" in info.data:
            checks.segment(info.data["type"], v)
        return v

    @property
    def overlay(self) -> bool:
        return self.type in checks.OVERLAYS


# What each value must be beyond its type (a unicast VIP, a unicast MAC, a
# prime table size, ...) is checked by xdsr.dataplane.services, the one
# reader of this schema on the way to the kernel (the agent and `xdsr dp
# apply`): it names every bad field of a state at once.


class RuleBackend(_Model):
    # The member's Maglev identity, stable when its MAC changes. The operator
    # always sends one; a hand-written file (`xdsr dp apply`) may leave it out
    # when it gives the MAC, and the identity is then "<mac>@<vlan>".
    id: str | None = None
    address: Address | None = None  # for MAC resolution when mac is None, and health checks
    mac: str | None = None  # None: the agent resolves address on `vlan` by ARP/ND
    vlan: VlanId = 0
    weight: Annotated[int, Field(ge=0)] = 1
    monitor_address: Address | None = None  # health checks go here instead of `address`
    monitor_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # instead of the service's port
    # A member on an overlay segment (the service's segment is VXLAN or
    # Geneve): its VNI and its tunnel endpoint, the outer destination the
    # node sends its frames to. Both null for a member on a VLAN.
    vni: Vni | None = None
    vtep: Address | None = None


class HealthCheck(_Model):
    """How the node checks each backend of a service (docs/agent.md, Health checks)."""

    type: Literal["tcp", "udp", "ping"]  # TCP handshake, UDP port-unreachable, ICMP echo
    delay: Annotated[float, Field(gt=0, le=3600)] = 5.0  # seconds between checks of one backend
    timeout: Annotated[float, Field(gt=0, le=3600)] = 3.0  # seconds one check waits for its answer
    rise: Annotated[int, Field(ge=1, le=10)] = 3  # consecutive successes that bring a backend up
    fall: Annotated[int, Field(ge=1, le=10)] = 3  # consecutive failures that take it down


class RuleService(_Model):
    # "<lb id>/<listener id>": how status is reported back. Optional for a
    # hand-written file; the service is then reported under its key.
    id: str | None = None
    vip: Address
    port: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["tcp", "udp"]
    segment: Segment = Segment()
    table_size: int | None = None
    backends: list[RuleBackend] = []
    health: HealthCheck | None = None  # None: backends are not checked


class Services(_Model):
    """The services a node forwards: what the operator sends (DesiredState)
    and what `xdsr dp apply` reads from a file."""

    services: list[RuleService] = []


# The most bodies a full state is sent in (each up to the agent's body limit).
MAX_PARTS = 1024


class DesiredState(Services):
    generation: Annotated[int, Field(ge=1)]
    # Which stream of generations this belongs to (the operator's group and
    # its uid): generations of another epoch are not comparable. "" for a
    # hand-written state.
    epoch: str = ""
    # Set: a delta from generation `base` of the same epoch; `services` is
    # then empty and `changes` holds, per load balancer id (the part of a
    # service id before "/"), the services it has now ([] = none any more).
    base: Annotated[int, Field(ge=0)] | None = None
    changes: dict[str, list[RuleService]] = {}
    # A full state sent in several bodies: this is body `part` of `parts`.
    part: Annotated[int, Field(ge=0)] = 0
    parts: Annotated[int, Field(ge=1, le=MAX_PARTS)] = 1

    @model_validator(mode="after")
    def _parts(self) -> DesiredState:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} of {self.parts}: parts are numbered from 0")
        if self.parts > 1 and self.base is not None:
            raise ValueError("only a full state is sent in parts (a delta has base)")
        return self

    @property
    def is_delta(self) -> bool:
        return self.base is not None

    @property
    def is_part(self) -> bool:
        return self.parts > 1


def owner(service_id: str | None) -> str:
    """The load balancer a service id belongs to (the delta protocol's unit)."""
    return (service_id or "").split("/", 1)[0]


class ServiceReport(_Model):
    id: str
    ok: bool  # installed in the data plane
    error: str | None = None
    active_backends: int = 0  # backends that received slots
    unresolved: list[str] = []  # backend ids whose MAC could not be resolved (left out of the table)
    down: list[str] = []  # backend ids this node's health checks find down (still in the table: the operator decides)
    unchecked: list[str] = []  # backend ids this node cannot check (no address, no MAC, no health source on its VLAN)
    packets: int = 0  # forwarded since the service was installed
    bytes: int = 0


class AgentState(_Model):
    name: str
    generation: int = 0  # last generation applied; 0 = none yet
    applied_at: float | None = None  # unix time of the last apply
    apply_seconds: float | None = None
    error: str | None = None  # why the last PUT failed, if it did
    epoch: str = ""  # the epoch of the generation applied
    # True: `services` reports only the load balancers named in `changed`
    # (those the delta named, or, answering GET ?since=, those whose reports
    # changed since); False: every service the node holds.
    partial: bool = False
    services: list[ServiceReport] = []
    # The agent process (a restart is another) and its report sequence when
    # this was read: the `since` of the next poll (docs/agent.md).
    instance: str = ""
    seq: int = 0
    changed: list[str] | None = None  # load balancers of a partial answer, held or gone
    # A partial answer to a poll: service id -> [packets, bytes] of the
    # services (of load balancers not in `changed`) whose counters moved
    # since; the other fields of their reports did not change.
    counters: dict[str, tuple[int, int]] = {}
