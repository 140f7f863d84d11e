"""What the provider agent tells Octavia (DriverLibrary.update_loadbalancer_status):
the payloads — built from xdsr's statuses and the change the agent applied —
and the Reporter that sends them, retried while Octavia's database is busy,
remembering the operating statuses it sent so that only changes follow."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from xdsr.octavia.changes import CHILDREN, ID_KEY, PLURAL, deleting, split_op, tree_ids

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]


def _fix(prov: str) -> str:
    # Reported to Octavia only when the change is over: still pending means it did not happen in time.
    return "ERROR" if prov.startswith("PENDING_") else prov


def status_payload(st: Obj, lb: Obj, gone: dict[str, set[str]]) -> Obj:
    """Octavia's status update from xdsr's statuses (bulk endpoint) of the
    objects Octavia has, plus DELETED for those the operation removed."""
    known = tree_ids(lb)
    out: Obj = {
        "loadbalancers": [
            {
                "id": st["id"],
                "provisioning_status": _fix(st["provisioning_status"]),
                "operating_status": st["operating_status"],
            }
        ]
    }
    for key in CHILDREN:
        entries = [
            {
                "id": e["id"],
                "provisioning_status": _fix(e["provisioning_status"]),
                "operating_status": e["operating_status"],
            }
            for e in st.get(key, [])
            if e["id"] in known[key] and e["id"] not in gone.get(key, set())
        ]
        entries += [{"id": i, "provisioning_status": "DELETED"} for i in sorted(gone.get(key, set()))]
        if entries:
            out[key] = entries
    return out


def deleted_payload(lb_id: str, lb: Obj) -> Obj:
    """The load balancer and everything Octavia had under it: DELETED."""
    payload: Obj = {
        k: [{"id": i, "provisioning_status": "DELETED"} for i in sorted(ids)] for k, ids in tree_ids(lb).items() if ids
    }
    payload["loadbalancers"] = [{"id": lb_id, "provisioning_status": "DELETED"}]
    return payload


def failure_payload(op: Obj, lb: Obj | None) -> Obj:
    """The change did not happen: its object ERROR; the load balancer and the
    listeners and pool Octavia locked for it back to ACTIVE (xdsr still
    serves what it had), so the user can fix or retry it."""
    kind, action = split_op(op["op"])
    obj = op.get("object") or {}
    lb = lb or {}
    lb_id = op["lb_id"]
    out: dict[str, list[Obj]] = {k: [] for k in ("loadbalancers", *CHILDREN)}

    def error(key: str, obj_id: str) -> None:
        out[key].append({"id": obj_id, "provisioning_status": "ERROR"})

    def active(key: str, obj_id: str) -> None:
        if not any(e["id"] == obj_id for e in out[key]):
            out[key].append({"id": obj_id, "provisioning_status": "ACTIVE"})

    if kind == "loadbalancer":
        if action == "create":
            for key, ids in tree_ids(obj or lb).items():
                for i in sorted(ids):
                    error(key, i)
            out["loadbalancers"].append({"id": lb_id, "provisioning_status": "ERROR", "operating_status": "OFFLINE"})
        elif action == "update":
            out["loadbalancers"].append({"id": lb_id, "provisioning_status": "ACTIVE"})
        else:  # delete, failover
            error("loadbalancers", lb_id)
        return {k: v for k, v in out.items() if v}

    pool_id: str | None = None
    if action == "batch_update":
        pool_id = op["pool_id"]
        for m in op.get("members") or []:
            error("members", m["member_id"])
        for i in deleting(op, lb).get("members", set()):
            error("members", i)
    else:
        error(PLURAL[kind], obj[ID_KEY[kind]])
        if kind == "pool":
            for m in obj.get("members") or []:
                error("members", m["member_id"])
            if obj.get("healthmonitor"):
                error("healthmonitors", obj["healthmonitor"]["healthmonitor_id"])
            if obj.get("listener_id"):
                active("listeners", obj["listener_id"])
        if kind in ("member", "health_monitor"):
            pool_id = obj.get("pool_id")
    if pool_id:
        active("pools", pool_id)
        for li in lb.get("listeners") or []:
            if li and li.get("default_pool_id") == pool_id:
                active("listeners", li["listener_id"])
    out["loadbalancers"].append({"id": lb_id, "provisioning_status": "ACTIVE"})
    return {k: v for k, v in out.items() if v}


class Reporter:
    """Sends status updates and listener statistics to Octavia and remembers what it sent."""

    def __init__(self, lib: Any, stop: threading.Event) -> None:
        self.lib = lib  # octavia_lib DriverLibrary (or a stand-in)
        self._stop = stop
        self.last_oper: dict[tuple[str, str], str] = {}
        self.last_stats: dict[str, tuple[int, int]] = {}

    def status(self, payload: Obj) -> None:
        """Octavia's status update, retried: the database may be busy (SQLite
        answers `database is locked` while another transaction writes)."""
        deadline = time.monotonic() + 60.0
        delay = 0.05
        while True:
            try:
                self.lib.update_loadbalancer_status(payload)
                break
            except Exception as exc:  # UpdateStatusError, or the agent's socket not there yet
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    LOG.error("xdsr: Octavia did not take the status update %s: %s", payload, exc)
                    return
                LOG.debug("xdsr: status update refused, retrying: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        for key, entries in payload.items():
            for e in entries:
                if "operating_status" in e:
                    self.last_oper[(key, e["id"])] = e["operating_status"]

    def statistics(self, counters: list[Obj]) -> None:
        try:
            self.lib.update_listener_statistics({"listeners": counters})
        except Exception as exc:
            LOG.warning("xdsr: Octavia did not take listener statistics: %s", exc)
            return
        for c in counters:
            self.last_stats[c["id"]] = (c["bytes_in"], c["packets_in"])

    def forget(self, payload: Obj) -> None:
        """The objects of the payload are gone: nothing more to remember of them."""
        for key, entries in payload.items():
            for e in entries:
                self.last_oper.pop((key, e["id"]), None)
                if key == "listeners":
                    self.last_stats.pop(e["id"], None)
