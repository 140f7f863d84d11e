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


class PlacedLoadBalancer(_Model):
    generation: int  # the LoadBalancer.generation these rules were compiled from
    project_id: str
    services: list[RuleService] = []


class Group(_Model):
    """One resource per LBN group, as in the paper: its members and the rules
    of every load balancer placed on it. Its store revision is the
    generation pushed to the group's agents."""

    name: str
    lbns: list[str] = []
    loadbalancers: dict[str, PlacedLoadBalancer] = {}
