"""Octavia's quota bodies: /v2/lbaas/quotas, /quotas/{project_id}, /quotas/defaults.

A limit is -1 (unlimited) up to Octavia's 2,000,000,000; null in an update
sets the project back to the default. Octavia also answers with, and
accepts, the older names `load_balancer` and `health_monitor` (openstacksdk
uses them), so both are here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xdsr.model.quota import RESOURCES

MAX_QUOTA = 2_000_000_000
Limit = Annotated[int, Field(ge=-1, le=MAX_QUOTA, strict=True)]
ALIASES = {"load_balancer": "loadbalancer", "health_monitor": "healthmonitor"}


class QuotaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loadbalancer: Limit | None = None
    listener: Limit | None = None
    pool: Limit | None = None
    member: Limit | None = None
    healthmonitor: Limit | None = None
    l7policy: Limit | None = None
    l7rule: Limit | None = None
    table_slots: Annotated[
        Limit | None, Field(description="xdsr: the sum of the Maglev table sizes of the project's services")
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for old, new in ALIASES.items():
                if old in data:
                    value = data.pop(old)
                    data.setdefault(new, value)
        return data


class QuotaUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quota: QuotaUpdate


def render(limits: dict[str, int], project_id: str | None = None) -> dict[str, Any]:
    """A quota as Octavia shows it: every limit, under both names where two exist."""
    out: dict[str, Any] = {name: limits[name] for name in RESOURCES}
    out.update({old: limits[new] for old, new in ALIASES.items()})
    if project_id is not None:
        out["project_id"] = project_id
    return out
