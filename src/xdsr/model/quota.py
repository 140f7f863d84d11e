"""Per-project quotas as stored (Octavia's quota API, docs/api.md).

/xdsr/quotas/<project id>   Quota: the project's own limits (null = the default)
/xdsr/quota-defaults        Quota: the defaults (null = unlimited)

A limit is a count, -1 for unlimited. `table_slots` is xdsr's own: the sum
of the Maglev table sizes of a project's services, the memory its load
balancers take on every LB node of their group.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Octavia's quota names, then xdsr's.
RESOURCES = ("loadbalancer", "listener", "pool", "member", "healthmonitor", "l7policy", "l7rule", "table_slots")
UNLIMITED = -1


class Quota(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loadbalancer: int | None = None
    listener: int | None = None
    pool: int | None = None
    member: int | None = None
    healthmonitor: int | None = None
    l7policy: int | None = None
    l7rule: int | None = None
    table_slots: int | None = None

    def over(self, defaults: Quota) -> dict[str, int]:
        """Every limit: this quota's, else the default's, else unlimited."""
        out = {}
        for name in RESOURCES:
            mine, default = getattr(self, name), getattr(defaults, name)
            out[name] = mine if mine is not None else default if default is not None else UNLIMITED
        return out
