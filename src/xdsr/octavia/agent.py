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
   committed tree through octavia-lib's DriverLibrary and replaces xdsr's
   tree of it, under Octavia's ids, in one request (PUT
   /v2/lbaas/xdsr/loadbalancers/{id}/tree): one write of xdsr's document, one
   generation for the LB nodes, whatever the change;
2. waits until xdsr's operator reports the change applied on the LB nodes
   (or ERROR, with the reason) and reports every object's provisioning and
   operating status to Octavia (DriverLibrary.update_loadbalancer_status):
   the changed object, and the load balancer, listeners and pool Octavia had
   put into PENDING_UPDATE;
3. every `status_interval`, reports operating statuses that changed, and
   every `stats_interval` the listeners' counters (follow.py).

What Octavia is told is built in report.py; how a queued change reads
against Octavia's tree in changes.py; Octavia's objects become xdsr's
request body in mapping.py.

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
from xdsr.octavia.changes import CHILDREN, committed, deleting, split_op
from xdsr.octavia.follow import Follower
from xdsr.octavia.neutron import Neutron, NeutronLookupError
from xdsr.octavia.report import Reporter, deleted_payload, failure_payload, status_payload
from xdsr.octavia.xdsr_api import LB, XdsrClient, XdsrRefused, XdsrUnreachable

LOG = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]


class ApplyError(Exception):
    """xdsr cannot take the change; the message is the reason reported (logged) with ERROR."""


def _dict(obj: Any) -> Obj:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    out: Obj = obj.to_dict(recurse=True, render_unsets=False)
    return out


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
        self.reporter = Reporter(lib, self._stop)
        self.follower = Follower(lib, xdsr, self.reporter, self._is_busy)

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
            self._safely(lambda s=with_stats: self.follower.follow(stats=s))
            if with_stats:
                next_stats = now + self.stats_interval
            self._stop.wait(self.status_interval)

    def follow(self, stats: bool = True) -> None:
        self.follower.follow(stats)

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
                    self.reporter.status(failure_payload(entry.op, None))
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

    def _is_busy(self, lb_id: str) -> bool:
        with self._guard:
            return lb_id in self._busy

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
            self.reporter.status(payload)
            LOG.info("xdsr: %s on load balancer %s: applied and reported in %.3fs", name, lb_id, time.monotonic() - t0)

    def _committed_tree(self, op: Obj) -> Obj | None:
        """Octavia's committed tree of the load balancer once it shows the
        change: the driver runs inside Octavia's transaction, so until the
        commit a create is invisible and an update shows the old values.
        A create that never shows was rolled back (None); an update that
        never shows is applied as Octavia has it. Deletes and failovers
        change nothing DriverLibrary shows: applied at once."""
        _, action = split_op(op["op"])
        deadline = time.monotonic() + self.commit_timeout
        delay = 0.01
        lb: Obj = {}
        while not self._stop.is_set():
            lb = _dict(self.lib.get_loadbalancer(op["lb_id"]))
            if lb and committed(op, lb):
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

    def _member_extra(self, m: mapping.Obj) -> dict[str, Any]:
        if self.neutron is None:
            return {}
        return self.neutron.member(str(m["address"]), m.get("subnet_id"))

    def sync(self, lb: Obj, skip: frozenset[str] = frozenset(), lbn_group: str | None = None) -> None:
        """Make xdsr's load balancer what Octavia's committed tree says,
        leaving out `skip` (objects being deleted): one request, one write
        in xdsr if anything differs, none if nothing does."""
        vip_segment = None
        if self.neutron is not None:
            vip_segment = self.neutron.vip_segment(lb.get("vip_subnet_id"), lb.get("vip_network_id"))
        # A load balancer's group is set when it is created (xdsr keeps it on replaces).
        group = lbn_group or validate.flavor_metadata(lb.get("flavor"))
        body = mapping.loadbalancer(
            lb, lbn_group=group, vip_segment=vip_segment, member_extra=self._member_extra, skip=skip
        )
        self.xdsr.put_tree(lb["loadbalancer_id"], body)

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
                pending = [last] + [e for k in CHILDREN for e in last[k]]
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
            self.reporter.status(failure_payload(op, obj))
            return
        payload = deleted_payload(lb_id, obj)
        self.reporter.status(payload)
        self.follower.forget(lb_id)
        self.reporter.forget(payload)


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
        nt = Neutron(
            neutron_mod.connect(conf),
            cache_seconds=group.neutron_cache_seconds,
            tunnel_endpoints=dict(group.tunnel_endpoints or {}),
        )
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
