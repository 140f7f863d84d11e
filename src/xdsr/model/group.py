"""LBN groups and LB node registrations."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from xdsr.model.agent import RuleService


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LbnRecord(_Model):
    """Written by an agent under a lease: present exactly while it lives."""

    name: str
    endpoint: str  # base URL of the agent's API, e.g. http://127.0.0.1:9101
    group: str | None = None  # the group the node asks to join, if any
    started_at: float  # unix time the agent started: a change means it restarted
    version: str = ""
    max_services: int = 4096  # what its data plane holds: the operator places no more on its group
    # Its Maglev slot memory and backend entries (xdsr_meta: slot_chunks,
    # backend_slots; docs/dataplane.md): the operator places no larger
    # tables on its group. 0: not told (an older agent), not accounted.
    slot_chunks: int = 0
    backend_slots: int = 0
    health_epoch: int = 0  # bumped when a backend the node checks goes up or down: read its state
    # The node's BGP state when it speaks BGP (docs/bgp.md): "announcing", "drained",
    # "withdrawn: <why>", each with "; sessions down: <peers>" when some are.
    bgp: str | None = None


class PlacedLoadBalancer(_Model):
    """The rules of one load balancer on its group (keys.rules_key)."""

    generation: int  # the LoadBalancer.generation these rules were compiled from
    project_id: str
    services: list[RuleService] = []
    down: dict[str, list[str]] = {}  # service id -> members health checks took out (weight 0 in services)
    # Why this generation of the load balancer is not what the group
    # forwards (docs/operator.md, Failure containment): its values or
    # tables were refused, by the operator or by a node. `services` are
    # then the rules it had before (admission refused) or none (a node
    # refused them); either way they hold no other load balancer back.
    refused: str | None = None


class Group(_Model):
    """An LBN group: its nodes. With the PlacedLoadBalancer documents under
    keys.rules_key(name, ...) it is the paper's one resource per group. The
    generation pushed to the group's agents is the highest store revision
    among all of them; `epoch` is bumped when rules are deleted, so that a
    deletion raises it too."""

    name: str
    lbns: list[str] = []
    epoch: int = 0
    # Set when the group is first written: a group of the same name written
    # anew (a store rebuilt from nothing) starts generations that cannot be
    # compared with the old ones, and the nodes must take its full state.
    uid: str = ""
