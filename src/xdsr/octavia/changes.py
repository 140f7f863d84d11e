"""A change the driver queued, read against Octavia's tree of its load
balancer (as DriverLibrary.get_loadbalancer gives it, as a dict): which
objects it names, which it removes, and whether Octavia has committed it.
Pure functions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from xdsr.api import schemas as s
from xdsr.model import loadbalancer as stored

Obj = dict[str, Any]

ID_KEY = {
    "loadbalancer": "loadbalancer_id",
    "listener": "listener_id",
    "pool": "pool_id",
    "member": "member_id",
    "health_monitor": "healthmonitor_id",
}
PLURAL = {
    "loadbalancer": "loadbalancers",
    "listener": "listeners",
    "pool": "pools",
    "member": "members",
    "health_monitor": "healthmonitors",
}
CHILDREN = ("listeners", "pools", "members", "healthmonitors")


def _updatable(update: type[BaseModel], model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(f for f in update.model_fields if f in model.model_fields)


# What an update may change and xdsr stores (the xdsr API's update schema ∩
# its stored object): Octavia writes these to its database as given, so the
# committed object showing the new values means the update is committed.
COMMITTED_FIELDS = {
    "loadbalancer": _updatable(s.LoadBalancerUpdate, stored.LoadBalancer),
    "listener": _updatable(s.ListenerUpdate, stored.Listener),
    "pool": _updatable(s.PoolUpdate, stored.Pool),
    "member": _updatable(s.MemberUpdate, stored.Member),
    "health_monitor": _updatable(s.HealthMonitorUpdate, stored.HealthMonitor),
}


def split_op(name: str) -> tuple[str, str]:
    """ "health_monitor_create" → ("health_monitor", "create"); "member_batch_update" → ("member", "batch_update")."""
    for kind in sorted(ID_KEY, key=len, reverse=True):
        if name.startswith(kind + "_"):
            return kind, name[len(kind) + 1 :]
    raise ValueError(f"unknown operation {name!r}")


def tree_ids(lb: Obj) -> dict[str, set[str]]:
    """Octavia's ids under a load balancer, by status-report key."""
    ids: dict[str, set[str]] = {k: set() for k in CHILDREN}
    for li in lb.get("listeners") or []:
        if li:
            ids["listeners"].add(li["listener_id"])
    for p in lb.get("pools") or []:
        if not p:
            continue
        ids["pools"].add(p["pool_id"])
        ids["members"].update(m["member_id"] for m in p.get("members") or [] if m)
        hm = p.get("healthmonitor")
        if hm:
            ids["healthmonitors"].add(hm["healthmonitor_id"])
    return ids


def find(lb: Obj, kind: str, obj_id: str) -> Obj | None:
    """An object of Octavia's tree by kind (as in operation names) and id."""
    if kind == "listener":
        return next((li for li in lb.get("listeners") or [] if li and li["listener_id"] == obj_id), None)
    for p in lb.get("pools") or []:
        if not p:
            continue
        if kind == "pool" and p["pool_id"] == obj_id:
            return p  # type: ignore[no-any-return]
        if kind == "member":
            m = next((m for m in p.get("members") or [] if m and m["member_id"] == obj_id), None)
            if m is not None:
                return m  # type: ignore[no-any-return]
        hm = p.get("healthmonitor")
        if kind == "health_monitor" and hm and hm["healthmonitor_id"] == obj_id:
            return hm  # type: ignore[no-any-return]
    return None


def deleting(op: Obj, lb: Obj) -> dict[str, set[str]]:
    """What the operation removes, by status-report key."""
    kind, action = split_op(op["op"])
    obj = op.get("object") or {}
    out: dict[str, set[str]] = {}
    if action == "delete" and kind != "loadbalancer":
        out[PLURAL[kind]] = {obj[ID_KEY[kind]]}
        if kind == "pool":
            pool = next((p for p in lb.get("pools") or [] if p and p["pool_id"] == obj["pool_id"]), obj)
            out["members"] = {m["member_id"] for m in pool.get("members") or [] if m}
            hm = pool.get("healthmonitor")
            if hm:
                out["healthmonitors"] = {hm["healthmonitor_id"]}
    elif action == "batch_update":
        wanted = {m["member_id"] for m in op.get("members") or []}
        pool = next((p for p in lb.get("pools") or [] if p and p["pool_id"] == op["pool_id"]), {})
        out["members"] = {m["member_id"] for m in pool.get("members") or [] if m and m["member_id"] not in wanted}
    return out


def committed(op: Obj, lb: Obj) -> bool:
    """Whether Octavia's tree shows the change: until the commit a create is
    invisible and an update shows the old values. Deletes and failovers
    change nothing DriverLibrary shows."""
    kind, action = split_op(op["op"])
    obj = op.get("object") or {}
    fields = COMMITTED_FIELDS.get(kind, ())
    if action == "create":
        return kind == "loadbalancer" or find(lb, kind, obj[ID_KEY[kind]]) is not None
    if action == "update":
        have = lb if kind == "loadbalancer" else find(lb, kind, obj[ID_KEY[kind]])
        return have is not None and all(have.get(f) == obj[f] for f in fields if f in obj)
    if action == "batch_update":
        for m in op.get("members") or []:
            have = find(lb, "member", m["member_id"])
            if have is None or any(have.get(f) != m[f] for f in COMMITTED_FIELDS["member"] if f in m):
                return False
    return True
