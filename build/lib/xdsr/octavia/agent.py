"""The xdsr provider agent: run by `octavia-driver-agent` (entry point
`octavia.driver_agent.provider_agents` → `xdsr`, enabled with
`[driver_agent] enabled_provider_agents = xdsr`), one per API host.

It is the long-lived half of the provider (the driver object lives for one
API request). It

1. takes the changes the driver queued (xdsr.octavia.spool), one load
   balancer at a time, waits until Octavia has committed each (the driver is
   called inside Octavia's transaction: until the commit the change is
   invisible, and a status update would wait on the database lock), then
   makes xdsr hold what Octavia holds for that load balancer: it reads the
   committed tree through octavia-lib's DriverLibrary and sends the xdsr API
   server the differences, under Octavia's ids;
2. waits until xdsr's operator reports the change applied on the LB nodes
   (or ERROR, with the reason) and reports every object's provisioning and
   operating status to Octavia (DriverLibrary.update_loadbalancer_status):
   the changed object, and the load balancer, listeners and pool Octavia had
   put into PENDING_UPDATE;
3. every `status_interval`, reports operating statuses that changed (an LB
   node down, a member's MAC resolved), and every `stats_interval` the
   listeners' counters (update_listener_statistics), from one request to
   the API server (GET /v2/lbaas/xdsr/statuses).

Changes are level-triggered: whatever went wrong before (xdsr unreachable, a
crash of this agent), the next change of the load balancer — or an Octavia
failover of it, the user's way to retry an ERROR — brings xdsr in line with
Octavia's committed state.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from xdsr.octavia import mapping, spool, validate
from xdsr.octavia.neutron import Neutron, NeutronLookupError
from xdsr.octavia.xdsr_api import LB, Tree, XdsrClient, XdsrRefused, XdsrUnreachable

LOG = logging.getLogger(__name__)

T = TypeVar("T")
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
# Attributes an update passes through to the database unchanged: when the
# committed object shows the new values, the update has been committed.
COMMITTED_FIELDS = {
    "loadbalancer": ("name", "description", "admin_state_up", "vip_qos_policy_id"),
    "listener": (
        "name",
        "description",
        "admin_state_up",
        "default_pool_id",
        "timeout_client_data",
        "timeout_member_connect",
        "timeout_member_data",
        "timeout_tcp_inspect",
    ),
    "pool": ("name", "description", "admin_state_up", "lb_algorithm"),
    "member": ("name", "admin_state_up", "weight", "monitor_address", "monitor_port"),
    "health_monitor": (
        "name",
        "admin_state_up",
        "delay",
        "timeout",
        "max_retries",
        "max_retries_down",
        "http_method",
        "url_path",
        "expected_codes",
    ),
}


class ApplyError(Exception):
    """xdsr cannot take the change; the message is the reason reported (logged) with ERROR."""


def _dict(obj: Any) -> Obj:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    out: Obj = obj.to_dict(recurse=True, render_unsets=False)
    return out


def split_op(name: str) -> tuple[str, str]:
    """ "health_monitor_create" → ("health_monitor", "create"); "member_batch_update" → ("member", "batch_update")."""
    for kind in sorted(ID_KEY, key=len, reverse=True):
        if name.startswith(kind + "_"):
            return kind, name[len(kind) + 1 :]
    raise ValueError(f"unknown operation {name!r}")


# --- the Octavia tree, as DriverLibrary.get_loadbalancer gives it ---------------------------


def tree_ids(lb: Obj) -> dict[str, set[str]]:
    """Octavia's ids under a load balancer, by status-report key."""
    ids: dict[str, set[str]] = {k: set() for k in ("listeners", "pools", "members", "healthmonitors")}
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
    for key in ("listeners", "pools", "members", "healthmonitors"):
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


def failure_payload(op: Obj, lb: Obj | None) -> Obj:
    """The change did not happen: its object ERROR; the load balancer and the
    listeners and pool Octavia locked for it back to ACTIVE (xdsr still
    serves what it had), so the user can fix or retry it."""
    kind, action = split_op(op["op"])
    obj = op.get("object") or {}
    lb = lb or {}
    lb_id = op["lb_id"]
    out: dict[str, list[Obj]] = {k: [] for k in ("loadbalancers", "listeners", "pools", "members", "healthmonitors")}

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


# --- the agent ------------------------------------------------------------------------------


class Agent:
    def __init__(
        self,
        lib: Any,  # octavia_lib DriverLibrary (or a stand-in)
        xdsr: XdsrClient,
        spool_dir: str | Path,
        neutron: Neutron | None = None,
        *,
        apply_timeout: float = 30.0,
        commit_timeout: float = 30.0,
        observe_timeout: float = 120.0,
        status_interval: float = 5.0,
        stats_interval: float = 10.0,
        workers: int = 8,
    ) -> None:
        self.lib = lib
        self.xdsr = xdsr
        self.spool_dir = Path(spool_dir)
        self.neutron = neutron
        self.apply_timeout = apply_timeout
        self.commit_timeout = commit_timeout
        self.observe_timeout = observe_timeout
        self.status_interval = status_interval
        self.stats_interval = stats_interval
        self.workers = workers
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._lb_locks: dict[str, threading.Lock] = {}
        self._busy: dict[str, int] = {}  # lb id -> operations in progress
        self._in_flight: set[str] = set()
        # What Octavia was last told, so that only changes are reported.
        self._last_oper: dict[tuple[str, str], str] = {}
        self._last_stats: dict[str, tuple[int, int]] = {}
        self._octavia: dict[str, tuple[bool, float]] = {}  # lb id -> (Octavia's?, checked at)
        self._unreachable_logged = False

    # --- main loop ---

    def run(self, exit_event: Any = None) -> None:
        """Until exit_event (octavia-driver-agent's multiprocessing Event) or stop()."""
        wake = spool.wake_socket(self.spool_dir)
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="xdsr-op")
        # Following runs beside the queue: its first pass may ask Octavia
        # about many load balancers, and changes must not wait for that.
        follower = threading.Thread(target=self._follow_loop, name="xdsr-follow", daemon=True)
        follower.start()
        LOG.info("xdsr provider agent started: spool %s, xdsr API %s", self.spool_dir, self.xdsr.url)
        try:
            while not self._stop.is_set() and not (exit_event is not None and exit_event.is_set()):
                for entry in spool.pending(self.spool_dir):
                    with self._guard:
                        if entry.path.name in self._in_flight:
                            continue
                        self._in_flight.add(entry.path.name)
                    executor.submit(self._run_entry, entry)
                # Woken by the driver's poke; the timeout only bounds a lost one.
                ready, _, _ = select.select([wake], [], [], 0.5)
                if ready:
                    spool.drain(wake)
        finally:
            self._stop.set()
            follower.join(10)
            executor.shutdown(wait=True, cancel_futures=True)
            wake.close()
            with contextlib.suppress(OSError):
                (self.spool_dir / spool.WAKE).unlink()
            self.xdsr.close()
            LOG.info("xdsr provider agent stopped")

    def _follow_loop(self) -> None:
        next_stats = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with_stats = now >= next_stats
            self._safely(lambda s=with_stats: self.follow(stats=s))
            if with_stats:
                next_stats = now + self.stats_interval
            self._stop.wait(self.status_interval)

    def stop(self) -> None:
        self._stop.set()
        spool.poke(self.spool_dir)

    def _safely(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            LOG.exception("xdsr provider agent: unexpected error")

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise ApplyError("the agent is stopping")

    # --- one queued change ---

    def _run_entry(self, entry: spool.Entry) -> None:
        try:
            self.process(entry.op)
        except Exception:
            LOG.exception("xdsr: %s failed unexpectedly", entry.op.get("op"))
            with contextlib.suppress(Exception):
                if entry.op.get("lb_id"):
                    self._report(failure_payload(entry.op, None))
        finally:
            if not self._stop.is_set():
                spool.done(entry)  # on stop it stays queued: the next start finishes it
            with self._guard:
                self._in_flight.discard(entry.path.name)

    @contextlib.contextmanager
    def _lb(self, lb_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._lb_locks.setdefault(lb_id, threading.Lock())
            self._busy[lb_id] = self._busy.get(lb_id, 0) + 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._busy[lb_id] -= 1
                if not self._busy[lb_id]:
                    del self._busy[lb_id]

    def _lb_of(self, op: Obj) -> str | None:
        """The load balancer of a member or monitor change (Octavia passes only the pool)."""
        if op.get("lb_id"):
            return str(op["lb_id"])
        obj = op.get("object") or {}
        pool_id = op.get("pool_id") or obj.get("pool_id")
        if not pool_id:
            return None
        # xdsr answers in milliseconds; a DriverLibrary call costs ~0.2 s.
        with contextlib.suppress(XdsrUnreachable, XdsrRefused):
            r = self.xdsr.request("GET", f"/v2/lbaas/pools/{pool_id}", ok=(200, 404))
            if r.status_code == 200:
                return str(r.json()["pool"]["loadbalancers"][0]["id"])
        pool = self.lib.get_pool(pool_id)
        lb_id = getattr(pool, "loadbalancer_id", None) if pool is not None else None
        return str(lb_id) if lb_id else None

    def process(self, op: Obj) -> None:
        name = op["op"]
        lb_id = self._lb_of(op)
        if lb_id is None:
            LOG.warning("xdsr: %s: its load balancer is gone from Octavia; nothing to do", name)
            return
        op = {**op, "lb_id": lb_id}
        with self._lb(lb_id):
            if name == "loadbalancer_delete":
                self._delete_lb(op)
                return
            lb = self._committed_tree(op)
            if lb is None:
                LOG.info(
                    "xdsr: %s on load balancer %s is not in Octavia's database (rolled back?): dropped", name, lb_id
                )
                return
            gone = deleting(op, lb)
            skip = frozenset(i for ids in gone.values() for i in ids)
            t0 = time.monotonic()
            try:
                self._apply(lambda: self.sync(lb, skip, op.get("lbn_group")))
                st = self._observe(lb_id)
                if st is None:
                    raise ApplyError(f"load balancer {lb_id} vanished from xdsr")
                payload = status_payload(st, lb, gone)
                if st["provisioning_status"] != "ACTIVE":
                    reason = st.get("error") or "the LB nodes did not apply it in time"
                    LOG.warning("xdsr: %s on load balancer %s: %s: %s", name, lb_id, st["provisioning_status"], reason)
            except ApplyError as exc:
                LOG.warning("xdsr: %s on load balancer %s: ERROR: %s", name, lb_id, exc)
                payload = failure_payload(op, lb)
            self._report(payload)
            LOG.info("xdsr: %s on load balancer %s: applied and reported in %.3fs", name, lb_id, time.monotonic() - t0)

    def _committed_tree(self, op: Obj) -> Obj | None:
        """Octavia's committed tree of the load balancer once it shows the
        change: the driver runs inside Octavia's transaction, so until the
        commit a create is invisible and an update shows the old values.
        A create that never shows was rolled back (None); an update that
        never shows is applied as Octavia has it. Deletes and failovers
        change nothing DriverLibrary shows: applied at once."""
        kind, action = split_op(op["op"])
        obj = op.get("object") or {}
        fields = COMMITTED_FIELDS.get(kind, ())

        def shows(lb: Obj) -> bool:
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

        deadline = time.monotonic() + self.commit_timeout
        delay = 0.01
        lb: Obj = {}
        while not self._stop.is_set():
            lb = _dict(self.lib.get_loadbalancer(op["lb_id"]))
            if lb and shows(lb):
                return lb
            if time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        if action == "create" or not lb:
            return None
        LOG.warning(
            "xdsr: %s not visible in Octavia after %ss: applying Octavia's state", op["op"], self.commit_timeout
        )
        return lb

    # --- making xdsr hold what Octavia holds ---

    def _apply(self, fn: Callable[[], T]) -> T:
        """fn, retried while the API server is unreachable, up to apply_timeout."""
        deadline = time.monotonic() + self.apply_timeout
        delay = 0.1
        while True:
            try:
                return fn()
            except XdsrUnreachable as exc:
                if time.monotonic() + delay > deadline:
                    raise ApplyError(f"the xdsr API server is unreachable: {exc}") from None
                self._sleep(delay)
                delay = min(delay * 2, 2.0)
            except (XdsrRefused, NeutronLookupError) as exc:
                raise ApplyError(str(exc)) from None

    def _member_extra(self, m: mapping.Obj) -> tuple[str | None, dict[str, Any] | None]:
        if self.neutron is None:
            return None, None
        return self.neutron.member(str(m["address"]), m.get("subnet_id"))

    def sync(self, lb: Obj, skip: frozenset[str] = frozenset(), lbn_group: str | None = None) -> None:
        """Make xdsr's load balancer what Octavia's committed tree says,
        leaving out `skip` (objects being deleted). Idempotent: it reads
        xdsr's state first and sends only differences."""
        x = self.xdsr
        lb_id = lb["loadbalancer_id"]
        cur = x.tree(lb_id)
        if cur is None:
            vip_segment = None
            if self.neutron is not None:
                vip_segment = self.neutron.vip_segment(lb.get("vip_subnet_id"), lb.get("vip_network_id"))
            group = lbn_group or validate.flavor_metadata(lb.get("flavor"))
            body = mapping.loadbalancer(
                lb, lbn_group=group, vip_segment=vip_segment, member_extra=self._member_extra, skip=skip
            )
            x.request("POST", LB, json={"loadbalancer": body})
            return
        self._sync_children(lb, cur, skip)

    def _sync_children(self, lb: Obj, cur: Tree, skip: frozenset[str]) -> None:
        x = self.xdsr
        lb_id = lb["loadbalancer_id"]
        change = mapping.differs(mapping.loadbalancer_attrs(lb), cur.lb)
        if change:
            x.request("PUT", f"{LB}/{lb_id}", json={"loadbalancer": change})

        want_listeners = {
            li["listener_id"]: li for li in lb.get("listeners") or [] if li and li["listener_id"] not in skip
        }
        want_pools = {p["pool_id"]: p for p in lb.get("pools") or [] if p and p["pool_id"] not in skip}
        want_members = {
            m["member_id"]: (pid, m)
            for pid, p in want_pools.items()
            for m in p.get("members") or []
            if m and m["member_id"] not in skip
        }
        want_hms = {
            p["healthmonitor"]["healthmonitor_id"]: (pid, p["healthmonitor"])
            for pid, p in want_pools.items()
            if p.get("healthmonitor") and p["healthmonitor"]["healthmonitor_id"] not in skip
        }

        # Removals first, in the order xdsr accepts them: listeners (a pool
        # in use cannot go), then pools (their members and monitor go too),
        # then monitors and members of pools that stay.
        for lid in sorted(set(cur.listeners) - set(want_listeners)):
            x.request("DELETE", f"/v2/lbaas/listeners/{lid}", ok=(204, 404))
        for lid in sorted(set(cur.listeners) & set(want_listeners)):
            have, want = cur.listeners[lid].get("default_pool_id"), want_listeners[lid].get("default_pool_id")
            if want not in want_pools:
                want = None  # its pool is being deleted
            if have and have != want:
                x.request("PUT", f"/v2/lbaas/listeners/{lid}", json={"listener": {"default_pool_id": None}})
        removed_pools = set(cur.pools) - set(want_pools)
        for pid in sorted(removed_pools):
            x.request("DELETE", f"/v2/lbaas/pools/{pid}", ok=(204, 404))
        for hid in sorted(set(cur.healthmonitors) - set(want_hms)):
            if cur.healthmonitors[hid]["pools"][0]["id"] not in removed_pools:
                x.request("DELETE", f"/v2/lbaas/healthmonitors/{hid}", ok=(204, 404))
        for mid in sorted(set(cur.members) - set(want_members)):
            pid = cur.members[mid][0]
            if pid not in removed_pools:
                x.request("DELETE", f"/v2/lbaas/pools/{pid}/members/{mid}", ok=(204, 404))

        # Then additions and changes: pools (new ones with their members and
        # monitor in one request), members, monitors, listeners last (they
        # point at pools).
        new_pools = set(want_pools) - set(cur.pools)
        for pid, p in want_pools.items():
            if pid in new_pools:
                body = mapping.pool(p, loadbalancer_id=lb_id, member_extra=self._member_extra, skip=skip)
                x.request("POST", "/v2/lbaas/pools", json={"pool": body})
                continue
            change = mapping.differs(mapping.pool_attrs(p), cur.pools[pid])
            if change:
                x.request("PUT", f"/v2/lbaas/pools/{pid}", json={"pool": change})
        for mid, (pid, m) in want_members.items():
            if pid in new_pools:
                continue
            if mid not in cur.members:
                body = mapping.member(m, self._member_extra)
                x.request("POST", f"/v2/lbaas/pools/{pid}/members", json={"member": body})
                continue
            change = mapping.differs(mapping.member_attrs(m, self._member_extra), cur.members[mid][1])
            if change:
                x.request("PUT", f"/v2/lbaas/pools/{pid}/members/{mid}", json={"member": change})
        for hid, (pid, hm) in want_hms.items():
            if pid in new_pools:
                continue
            if hid not in cur.healthmonitors:
                x.request("POST", "/v2/lbaas/healthmonitors", json={"healthmonitor": mapping.healthmonitor(hm, pid)})
                continue
            change = mapping.differs(mapping.healthmonitor_attrs(hm), cur.healthmonitors[hid])
            if change:
                x.request("PUT", f"/v2/lbaas/healthmonitors/{hid}", json={"healthmonitor": change})
        for lid, li in want_listeners.items():
            if lid not in cur.listeners:
                body = mapping.listener(li, loadbalancer_id=lb_id)
                if body.get("default_pool_id") not in want_pools:
                    body.pop("default_pool_id", None)
                x.request("POST", "/v2/lbaas/listeners", json={"listener": body})
                continue
            attrs = mapping.listener_attrs(li)
            if attrs.get("default_pool_id") not in want_pools:
                attrs["default_pool_id"] = None
            change = mapping.differs(attrs, cur.listeners[lid])
            if change:
                x.request("PUT", f"/v2/lbaas/listeners/{lid}", json={"listener": change})

    def _observe(self, lb_id: str) -> Obj | None:
        """xdsr's statuses once nothing of the load balancer is pending (its
        LB nodes applied the change, or the operator found an ERROR); as they
        are when observe_timeout passes. None: xdsr has no such load balancer."""
        deadline = time.monotonic() + self.observe_timeout
        last: Obj | None = None
        while True:
            try:
                last = self.xdsr.statuses([lb_id]).get(lb_id)
                if last is None:
                    return None
                pending = [last] + [e for k in ("listeners", "pools", "members", "healthmonitors") for e in last[k]]
                if not any(e["provisioning_status"].startswith("PENDING_") for e in pending):
                    return last
            except XdsrUnreachable as exc:
                LOG.debug("xdsr: statuses of %s: %s", lb_id, exc)
            if time.monotonic() > deadline:
                if last is None:
                    raise ApplyError("the xdsr API server stopped answering before the LB nodes applied the change")
                return last
            self._sleep(0.02)

    def _delete_lb(self, op: Obj) -> None:
        lb_id = op["lb_id"]
        obj = op.get("object") or {}
        try:
            self._apply(lambda: self.xdsr.request("DELETE", f"{LB}/{lb_id}", params={"cascade": "true"}, ok=(204, 404)))
            if self._observe(lb_id) is not None:
                raise ApplyError(f"the LB nodes did not remove it within {self.observe_timeout}s")
        except ApplyError as exc:
            LOG.warning("xdsr: deleting load balancer %s: ERROR: %s", lb_id, exc)
            self._report(failure_payload(op, obj))
            return
        payload: Obj = {
            k: [{"id": i, "provisioning_status": "DELETED"} for i in sorted(ids)]
            for k, ids in tree_ids(obj).items()
            if ids
        }
        payload["loadbalancers"] = [{"id": lb_id, "provisioning_status": "DELETED"}]
        self._report(payload)
        with self._guard:
            self._octavia.pop(lb_id, None)
        self._forget(lb_id, payload)

    # --- reporting to Octavia ---

    def _report(self, payload: Obj) -> None:
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
                    self._last_oper[(key, e["id"])] = e["operating_status"]

    def _forget(self, lb_id: str, payload: Obj) -> None:
        for key, entries in payload.items():
            for e in entries:
                self._last_oper.pop((key, e["id"]), None)
                if key == "listeners":
                    self._last_stats.pop(e["id"], None)

    def _is_octavia(self, lb_id: str) -> bool:
        """Whether Octavia has this load balancer (xdsr may serve others too)."""
        now = time.monotonic()
        with self._guard:
            known = self._octavia.get(lb_id)
        if known is not None and (known[0] or now - known[1] < 60.0):
            return known[0]
        mine = self.lib.get_loadbalancer(lb_id) is not None
        with self._guard:
            self._octavia[lb_id] = (mine, now)
        return mine

    def follow(self, stats: bool = True) -> None:
        """Report operating statuses that changed, and (stats) listener counters."""
        try:
            statuses = self.xdsr.statuses()
        except (XdsrUnreachable, XdsrRefused) as exc:
            if not self._unreachable_logged:
                LOG.warning("xdsr: cannot follow statuses: %s", exc)
                self._unreachable_logged = True
            return
        self._unreachable_logged = False
        counters: list[Obj] = []
        for lb_id, st in statuses.items():
            with self._guard:
                if lb_id in self._busy:
                    continue
            if st["provisioning_status"].startswith("PENDING_") or not self._is_octavia(lb_id):
                continue
            changed: Obj = {}
            entries = [("loadbalancers", st)] + [
                (k, e) for k in ("listeners", "pools", "members", "healthmonitors") for e in st[k]
            ]
            for key, e in entries:
                if self._last_oper.get((key, e["id"])) != e["operating_status"]:
                    changed.setdefault(key, []).append({"id": e["id"], "operating_status": e["operating_status"]})
            if changed:
                self._report(changed)
            if stats:
                for li in st["listeners"]:
                    now = (li["bytes_in"], li["packets_in"])
                    if self._last_stats.get(li["id"]) != now:
                        counters.append(
                            {
                                "id": li["id"],
                                "bytes_in": li["bytes_in"],
                                # L2DSR sees only inbound packets and keeps no connection state.
                                "bytes_out": 0,
                                "active_connections": 0,
                                "total_connections": 0,
                                "request_errors": 0,
                                "packets_in": li["packets_in"],  # xdsr's; Octavia keeps only the fields above
                            }
                        )
        if counters:
            try:
                self.lib.update_listener_statistics({"listeners": counters})
                for c in counters:
                    self._last_stats[c["id"]] = (c["bytes_in"], c["packets_in"])
            except Exception as exc:
                LOG.warning("xdsr: Octavia did not take listener statistics: %s", exc)


def from_conf(conf: Any) -> Agent:
    from octavia_lib.api.drivers import driver_lib

    from xdsr.octavia import config
    from xdsr.octavia import neutron as neutron_mod

    config.register(conf)
    # One line per request to xdsr would drown the driver agent's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    group = conf.xdsr
    lib = driver_lib.DriverLibrary(
        status_socket=conf.driver_agent.status_socket_path,
        stats_socket=conf.driver_agent.stats_socket_path,
        get_socket=conf.driver_agent.get_socket_path,
    )
    xdsr = XdsrClient(group.api_url, lambda: config.token(conf), timeout=group.request_timeout)
    nt = None
    if neutron_mod.enabled(conf):
        nt = Neutron(neutron_mod.connect(conf), cache_seconds=group.neutron_cache_seconds)
    return Agent(
        lib,
        xdsr,
        group.spool_dir,
        nt,
        apply_timeout=group.apply_timeout,
        commit_timeout=group.commit_timeout,
        observe_timeout=group.observe_timeout,
        status_interval=group.status_interval,
        stats_interval=group.stats_interval,
    )


def provider_agent(exit_event: Any) -> None:
    """The entry point octavia-driver-agent runs in a process of its own."""
    from oslo_config import cfg

    from_conf(cfg.CONF).run(exit_event)
