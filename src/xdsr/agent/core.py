"""The agent's state machine: desired state in, data plane out.

Everything runs on one asyncio loop; every map access runs on one
data-plane thread (so the loop stays responsive and map accesses never
race), and applies are serialized by a lock: a PUT and a re-apply after a
member's MAC changed never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import generate_latest

import xdsr
from xdsr.agent import drift, rules
from xdsr.agent.health import HealthChecker, Overlay, Target
from xdsr.agent.metrics import AgentMetrics
from xdsr.agent.neighbors import NeighborTable
from xdsr.agent.registration import Registration
from xdsr.agent.reports import ReportLog
from xdsr.agent.resolver import NeighborKey, Resolver, family
from xdsr.agent.vips import HeldVips, held_pairs
from xdsr.dataplane import services
from xdsr.dataplane.libbpf import BpfError
from xdsr.dataplane.loader import MAP_SERVICES, Dataplane, DataplaneError
from xdsr.dataplane.model import Service, ServiceKey
from xdsr.dataplane.state import (
    ApplyReport,
    CounterValue,
    InstalledService,
    apply,
    apply_changes,
    installed,
    read_stats,
)
from xdsr.model.agent import AgentState, DesiredState, RuleService, ServiceReport, owner

if TYPE_CHECKING:
    from xdsr.agent.bgp import Speaker

log = logging.getLogger("xdsr.agent")

T = TypeVar("T")

# Services from which a state is checked and built off the event loop.
_OFF_LOOP = 256


@dataclass(frozen=True)
class AgentConfig:
    name: str
    iface: str
    netns: str | None = None
    resolve_timeout: float = 0.5  # how long a PUT waits for unknown MACs before applying without them
    resolve_interval: float = 30.0  # how often a resolved MAC is confirmed
    retry_interval: float = 1.0  # how often an unresolved member is asked for
    neighbor_file: Path | None = None
    verify_interval: float = 10.0  # how often the kernel's tables are checked for drift (see drift.py)
    underlay_next_hop: rules.IPAddress | None = None  # towards members' tunnel endpoints (rules.neighbor_key)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        dp: Dataplane,
        resolver: Resolver,
        metrics: AgentMetrics | None = None,
        registration: Registration | None = None,
        health: HealthChecker | None = None,
    ) -> None:
        self.config = config
        self.dp = dp
        self.resolver = resolver
        self.registration = registration
        self.health = health
        if health is not None:
            health.on_change = self._health_changed
        # rule id -> member id -> its check, None when this node cannot check it
        self.health_targets: dict[str, dict[str, Target | None]] = {}
        self.health_epoch = 0  # bumped when a backend goes up or down
        self.version = xdsr.__version__
        self.neighbors = NeighborTable(config.resolve_interval, config.retry_interval)
        self.metrics = metrics or AgentMetrics()
        self.metrics.register_agent(self)
        self._dp_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataplane")
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._reapply = False  # a MAC moved and the tables do not show it yet
        self._dp_identity: str | None = None  # set by adopt()
        self._neighbors_saved = -1  # neighbors.changes when last saved
        self.drift = drift.DriftGuard()
        # BGP (docs/bgp.md): the speaker re-decides what to announce after each apply.
        self.bgp: Speaker | None = None
        self.on_applied: Callable[[], None] | None = None

        # The desired state last applied, whole (see the property).
        self._desired: DesiredState | None = None
        self._holding = False
        self.generation = 0
        self.epoch = ""
        # The parts of a full state received so far: ((epoch, generation,
        # parts), the services of each part in order).
        self._parts: tuple[tuple[str, int, int], list[list[RuleService]]] | None = None
        # What the node holds, by load balancer (the delta protocol's unit):
        # its services, as built, and the neighbours they need.
        self.held: dict[str, list[RuleService]] = {}
        self.held_count = 0  # services in held
        self.built_by: dict[str, list[rules.Built]] = {}
        self.keys: dict[ServiceKey, str] = {}  # service key -> the service id holding it
        self.installed: dict[ServiceKey, InstalledService] = {}
        self._needs: dict[str, set[NeighborKey]] = {}
        self._need_count: Counter[NeighborKey] = Counter()
        self.applied_at: float | None = None
        self.apply_seconds: float | None = None
        self.error: str | None = None
        # Views over everything held, for the metrics collector and BGP
        # (which read them from the data-plane thread): made when read, not
        # at every apply, so that an apply costs what it changes.
        self._version = 0  # bumped whenever built_by or installed change
        self._views: dict[str, tuple[int, object]] = {}
        self.vips = HeldVips()  # the (VIP, segment) pairs held: what BGP may announce
        # What changed in the reports (and counters), numbered: a poll is
        # answered with what changed since its last answer (reports.py).
        self.reports = ReportLog()

    def _view(self, name: str, make: Callable[[], T]) -> T:
        have = self._views.get(name)
        if have is not None and have[0] == self._version:
            return have[1]  # type: ignore[return-value]
        version = self._version
        value = make()
        self._views[name] = (version, value)
        return value

    @property
    def built(self) -> list[rules.Built]:
        """Every service as built (a snapshot: never mutated)."""
        return self._view("built", lambda: [b for bs in list(self.built_by.values()) for b in bs])

    @property
    def installed_cache(self) -> list[InstalledService]:
        return self._view("installed", lambda: list(dict(self.installed).values()))

    @property
    def polled(self) -> list[tuple[str, InstalledService]]:
        """(service id, installed) of every service built and installed: whose counters a poll reads."""
        return self._view(
            "polled",
            lambda: [(b.rule_id, i) for b in self.built if (i := self.installed.get(b.service.key)) is not None],
        )

    @property
    def rule_ids(self) -> dict[ServiceKey, str]:
        return self._view("rule_ids", lambda: {b.service.key: b.rule_id for b in self.built})

    @property
    def desired(self) -> DesiredState | None:
        """The desired state last applied, whole: after deltas, made from
        what is held when asked (GET /v1/desired, a full state's no-op check)."""
        if self._desired is None and self._holding:
            self._desired = DesiredState.model_construct(
                generation=self.generation,
                epoch=self.epoch,
                base=None,
                changes={},
                services=[s for ss in self.held.values() for s in ss],
            )
        return self._desired

    # -- lifecycle ---------------------------------------------------------

    def adopt(self) -> None:
        """Before the loop runs: read what the kernel holds (an earlier agent's
        tables keep forwarding) and the MACs an earlier agent saved."""
        self._installed_from(installed(self.dp))
        self.drift.remember(self.dp)
        # The service map's kernel id names these very maps: ids are not
        # reused, so a cache saved for maps since purged is never taken.
        self._dp_identity = f"{self.dp.pin_dir}#{self.dp.maps[MAP_SERVICES].info.id}"
        loaded = 0
        if self.config.neighbor_file is not None:
            loaded = self.neighbors.load(self.config.neighbor_file, time.monotonic(), self._dp_identity)
        log.info(
            "adopted data plane services=%d max_services=%d cached_macs=%d generation=0",
            len(self.installed_cache),
            self.dp.max_services,
            loaded,
        )

    async def start(self) -> None:
        self.resolver.start()
        if self.health is not None:
            self.health.start()
        self._tasks.append(asyncio.create_task(self._resolve_loop(), name="resolve"))
        self._tasks.append(asyncio.create_task(drift.watch(self, self.config.verify_interval), name="drift"))
        if self.registration is not None:
            self._tasks.append(asyncio.create_task(self.registration.run(), name="registration"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("task %s failed", t.get_name())
        self._tasks.clear()
        if self.registration is not None:
            await self.registration.close()
        self._save_neighbors(force=True)
        self.resolver.close()
        if self.health is not None:
            self.health.close()
        self._dp_thread.shutdown(wait=True)
        self.dp.close()  # the maps stay pinned and the program attached: forwarding goes on

    async def _dp(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._dp_thread, fn, *args)

    async def _work(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """fn(*args), off the loop when it is large (checking and building a
        whole group takes seconds of CPU: the loop must keep renewing the
        node's lease and answering meanwhile)."""
        if size < _OFF_LOOP:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _build(self, changes: dict[str, list[RuleService]]) -> dict[str, list[rules.Built]]:
        hop = self.config.underlay_next_hop
        return {lb: rules.build_services(ss, self.neighbors.mac, hop) for lb, ss in changes.items()}

    # -- the API's operations ----------------------------------------------

    async def put(self, desired: DesiredState) -> tuple[int, AgentState]:
        """Apply a desired state, full or delta; returns (HTTP status, state).
        Raises rules.InvalidState (nothing changed) for a state that cannot
        apply. A delta is answered with the reports of the load balancers it
        names only, and refused (409) unless the node holds its base."""
        if desired.is_part:
            return await self._put_part(desired)
        if desired.is_delta:
            return await self._put_delta(desired)
        if len(desired.services) >= _OFF_LOOP:
            # Parsed (the request's body); the rest of a large state's way to
            # the kernel is timed by the apply's own line.
            log.info("full state generation=%d services=%d received", desired.generation, len(desired.services))
        await self._work(len(desired.services), rules.validate, desired, self.dp.max_services)
        async with self._lock:
            self._parts = None
            same_epoch = desired.epoch == self.epoch
            if same_epoch and desired.generation < self.generation:
                log.info("refused generation=%d: older than applied=%d", desired.generation, self.generation)
                return 409, await self.state()
            if same_epoch and desired.generation == self.generation and desired == self.desired:
                log.debug("generation=%d already applied: no-op", desired.generation)
                await drift.verify(self)  # a resync: the kernel must still hold it
                return 200, await self.state()
            if same_epoch and desired.generation == self.generation:
                log.warning("generation=%d re-sent with different content: applying it", desired.generation)
            # Only the load balancers whose services differ are built again.
            wanted = rules.by_owner(desired.services)
            changes = {lb: ss for lb, ss in wanted.items() if self.held.get(lb) != ss}
            changes.update({lb: [] for lb in self.held if lb not in wanted})
            status = await self._apply_changes(desired, changes, "put", full=True)
            return status, await self.state()

    async def _put_part(self, desired: DesiredState) -> tuple[int, AgentState]:
        """One part of a full state sent in several (model/agent.py): kept
        (202) until the last, which applies them all as one full state."""
        async with self._lock:
            ident = (desired.epoch, desired.generation, desired.parts)
            have = self._parts
            if desired.epoch == self.epoch and desired.generation < self.generation:
                self._parts = None
                log.info("refused part of generation=%d: older than applied=%d", desired.generation, self.generation)
                return 409, await self.state(set())
            if desired.part == 0:
                have = (ident, [])
            elif have is None or have[0] != ident or len(have[1]) not in (desired.part, desired.part + 1):
                # Not the next part (nor a retry of the last one) of the state being received.
                self._parts = None
                log.info(
                    "refused part %d/%d of %s:%d: %s",
                    desired.part,
                    desired.parts,
                    desired.epoch or "-",
                    desired.generation,
                    "no earlier part" if have is None else f"expected part {len(have[1])} of {have[0]}",
                )
                return 409, await self.state(set())
            received = [*have[1][: desired.part], desired.services]
            if desired.part < desired.parts - 1:
                self._parts = (ident, received)
                return 202, await self.state(set())
            self._parts = None
        whole = DesiredState.model_construct(
            generation=desired.generation,
            epoch=desired.epoch,
            base=None,
            changes={},
            part=0,
            parts=1,
            services=[s for part in received for s in part],
        )
        log.info(
            "received generation=%d in %d parts: %d services", whole.generation, desired.parts, len(whole.services)
        )
        return await self.put(whole)

    async def _put_delta(self, desired: DesiredState) -> tuple[int, AgentState]:
        async with self._lock:
            self._parts = None
            owners = set(desired.changes)
            if desired.epoch != self.epoch or desired.base != self.generation:
                if desired.epoch == self.epoch and desired.generation == self.generation:
                    return 200, await self.state(owners)  # a retry of the delta applied last
                log.info(
                    "refused delta %s:%s->%d: this node holds %s:%d, the full state is needed",
                    desired.epoch,
                    desired.base,
                    desired.generation,
                    self.epoch or "-",
                    self.generation,
                )
                return 409, await self.state(set())
            if desired.generation <= self.generation:
                raise rules.InvalidState(
                    [rules.FieldError("generation", f"{desired.generation} is not past base {desired.base}")]
                )
            rules.validate_delta(desired, self.held, self.held_count, self.keys, self.dp.max_services)
            status = await self._apply_changes(desired, desired.changes, "put")
            return status, await self.state(owners)

    async def _apply_changes(
        self, desired: DesiredState, changes: dict[str, list[RuleService]], trigger: str, full: bool = False
    ) -> int:
        """Bring the node to desired's generation by replacing the services
        of the load balancers in `changes` (full: and removing whatever else
        the kernel holds); the HTTP status. Caller holds the lock."""
        needed = rules.needed_by((s for ss in changes.values() for s in ss), self.config.underlay_next_hop)
        new = self.neighbors.want(needed)
        if new:
            await self._ask(new)
        try:
            await self._apply(changes, trigger, desired.generation, full)
        except (DataplaneError, BpfError, OSError, ValueError) as exc:
            self.error = f"apply of generation {desired.generation} failed: {exc}"
            log.error("apply failed generation=%d: %s", desired.generation, exc)
            # Counters are found through what the kernel holds, which a
            # failed apply may have changed in part.
            with contextlib.suppress(DataplaneError, BpfError, OSError):
                self._installed_from(await self._dp(installed, self.dp))
            return 500
        # Members no service needs any more are forgotten (after the apply:
        # until then the old state, and its members, still forward).
        gone: set[NeighborKey] = set()
        for lb, ss in changes.items():
            for k in self._needs.pop(lb, set()):
                self._need_count[k] -= 1
                if self._need_count[k] <= 0:
                    del self._need_count[k]
                    gone.add(k)
            if ss:
                mine = rules.needed_by(ss, self.config.underlay_next_hop)
                self._needs[lb] = mine
                for k in mine:
                    self._need_count[k] += 1
            gone -= self._need_count.keys()
            self.held_count += len(ss) - len(self.held.get(lb, ()))
            if ss:
                self.held[lb] = ss
            else:
                self.held.pop(lb, None)
        self.neighbors.forget(gone)
        self._desired = None if desired.is_delta else desired
        self._holding = True
        self.generation = desired.generation
        self.epoch = desired.epoch
        self._save_neighbors()
        return 200

    async def state(self, owners: set[str] | None = None, since: tuple[str, int] | None = None) -> AgentState:
        """What the node holds; with owners, the reports of those load
        balancers only (a push's answer). Otherwise every counter is read (a
        poll), and with since (instance, seq of an earlier answer) the answer
        is partial if this instance can tell what changed after it: the
        reports of the load balancers that changed, and the counters of the
        other services whose counters moved (reports.py)."""
        seqs = self.reports
        if owners is not None:
            built = [b for lb in sorted(owners) for b in self.built_by.get(lb, ())]
            stats = await self._dp(read_stats, self.dp, self._installed_of(built))
            return self._answer(built, stats.services, owners, seqs.seq)
        # Everything the answer is made of is taken before the read: an
        # apply running meanwhile is told by the sequence (counted()).
        read_at = seqs.seq
        lbs = seqs.changed_since(since[1]) if since is not None and seqs.known(*since) else None
        every = self.built
        built = every if lbs is None else [b for lb in sorted(lbs) for b in self.built_by.get(lb, ())]
        polled = self.polled
        stats = await self._dp(read_stats, self.dp, [i for _, i in polled])
        counted = {rid: (c.packets, c.bytes) for rid, i in polled if (c := stats.services.get(i.service.key))}
        seq = seqs.counted(counted, read_at)
        answer = self._answer(built, stats.services, lbs, seq)
        if since is not None and lbs is not None:
            answer.counters = seqs.moved_since(since[1], lbs)
        return answer

    def _report_keys(self) -> dict[str, list[tuple[object, ...]]]:
        """Per load balancer, what its reports are made of but the counters
        (which a poll compares on its own): what a full apply may change."""
        return {
            lb: [
                (
                    b.rule_id,
                    b.service.key in self.installed,
                    b.active_backends,
                    tuple(b.unresolved),
                    tuple(self.health_targets.get(b.rule_id, {}).items()),
                )
                for b in bs
            ]
            for lb, bs in self.built_by.items()
        }

    def _installed_of(self, built: list[rules.Built]) -> list[InstalledService]:
        return [i for b in built if (i := self.installed.get(b.service.key)) is not None]

    def _answer(
        self, built: list[rules.Built], counters: dict[ServiceKey, CounterValue], lbs: set[str] | None, seq: int
    ) -> AgentState:
        reports = []
        for b in built:
            c = counters.get(b.service.key)
            reports.append(
                ServiceReport.model_construct(
                    id=b.rule_id,
                    ok=c is not None,
                    error=None if c is not None else "not installed",
                    active_backends=b.active_backends,
                    unresolved=list(b.unresolved),
                    down=self._down(b.rule_id),
                    unchecked=[m for m, t in self.health_targets.get(b.rule_id, {}).items() if t is None],
                    packets=c.packets if c else 0,
                    bytes=c.bytes if c else 0,
                )
            )
        return AgentState(
            name=self.config.name,
            generation=self.generation,
            epoch=self.epoch,
            applied_at=self.applied_at,
            apply_seconds=self.apply_seconds,
            error=self.error,
            partial=lbs is not None,
            services=reports,
            instance=self.reports.instance,
            seq=seq,
            changed=sorted(lbs) if lbs is not None else None,
        )

    async def metrics_text(self) -> bytes:
        return await self._dp(generate_latest, self.metrics.registry)

    # -- applying ----------------------------------------------------------

    def _installed_from(self, inst: list[InstalledService]) -> None:
        self.installed = {i.service.key: i for i in inst}
        self._version += 1
        self.vips.reset(held_pairs(self.built, self.installed))
        self.reports.changed(None)

    def _apply_sync(self, upsert: list[Service], remove: list[ServiceKey], full: list[Service] | None) -> ApplyReport:
        report = apply(self.dp, full) if full is not None else apply_changes(self.dp, upsert, remove)
        self.drift.remember(self.dp)  # on the data-plane thread, right after the flip
        return report

    async def _apply(
        self, changes: dict[str, list[RuleService]], trigger: str, generation: int, full: bool = False
    ) -> None:
        """Build the tables of the changed load balancers' services (the
        others are kept as built) and apply them in one call: changed tables
        written into free space, then one flip of the index (unchanged tables
        are not rewritten). A delta costs what it changes; full: the kernel
        is made to hold exactly what is built, whatever it held (a full
        state, a drift repair). Caller holds the lock."""
        before = self._report_keys() if full else {}
        fresh = await self._work(sum(map(len, changes.values())), self._build, changes)
        upsert = [b.service for bs in fresh.values() for b in bs]
        staying = {s.key for s in upsert}
        remove = [b.service.key for lb in fresh for b in self.built_by.get(lb, ()) if b.service.key not in staying]
        everything = None
        if full:
            everything = [b.service for lb, bs in self.built_by.items() if lb not in fresh for b in bs] + upsert
        try:
            report = await self._dp(self._apply_sync, upsert, remove, everything)
        except BaseException:
            self.metrics.applies.labels(trigger, "error").inc()
            raise
        seconds = report.seconds
        self.metrics.apply_seconds.observe(seconds)
        self.metrics.applies.labels(trigger, "ok").inc()
        # What the kernel holds now, without reading every service back:
        # the apply says what it wrote and what it removed.
        held_before = [] if full else held_pairs((b for lb in fresh for b in self.built_by.get(lb, ())), self.installed)
        for key in report.removed:
            self.installed.pop(key, None)
        self.installed.update(report.installed)
        old_rules = {lb: [b.rule_id for b in self.built_by.get(lb, ())] for lb in fresh}
        for lb in fresh:  # all first: a key may move from one load balancer to another
            for b in self.built_by.get(lb, ()):
                self.keys.pop(b.service.key, None)
        for lb, bs in fresh.items():
            if bs:
                self.built_by[lb] = bs
            else:
                self.built_by.pop(lb, None)
            for b in bs:
                self.keys[b.service.key] = b.rule_id
        self._version += 1
        if full:  # the kernel was made to hold everything built: count it all again
            self.vips.reset(held_pairs(self.built, self.installed))
        else:
            self.vips.update(held_before, held_pairs((b for bs in fresh.values() for b in bs), self.installed))
        self.applied_at = time.time()
        self.apply_seconds = seconds
        self.error = None
        self._reapply = False  # built from the latest MACs
        self._update_health(changes, fresh, old_rules)
        if full:  # every table built again (a MAC came): the reports of those that read otherwise now
            after = self._report_keys()
            self.reports.changed({lb for lb in before.keys() | after.keys() if before.get(lb) != after.get(lb)})
        else:
            self.reports.changed(fresh)
        if self.on_applied is not None:
            self.on_applied()
        for key, old, new in report.resized:
            log.warning(
                "service %s (%s): Maglev table resized %d -> %d slots, most of its flows moved to other backends",
                self.keys.get(key, "?"),
                key,
                old,
                new,
            )
        unresolved = sum(len(b.unresolved) for bs in fresh.values() for b in bs)
        log.info(
            "applied generation=%d trigger=%s services=%d changed_lbs=%d created=%d updated=%d unchanged=%d "
            "removed=%d unresolved_in_changed=%d seconds=%.4f",
            generation,
            trigger,
            len(self.keys),
            len(changes),
            len(report.created),
            len(report.updated),
            len(report.unchanged),
            len(report.removed),
            unresolved,
            seconds,
        )

    # -- health checks -----------------------------------------------------

    def _update_health(
        self, changes: dict[str, list[RuleService]], fresh: dict[str, list[rules.Built]], before: dict[str, list[str]]
    ) -> None:
        """Check the backends of every service that asks for it, with the
        MACs the tables hold; a backend without one (unresolved, or not given
        an address to check) is reported unchecked, never guessed. Only the
        changed load balancers' checks are worked out again (`before`: the
        rule ids they had), so that an apply costs what it changes."""
        checker = self.health
        gone = {rid for lb in changes for rid in before.get(lb, ()) if rid in self.health_targets}
        fresh_targets: dict[str, dict[str, Target | None]] = {}
        for lb, ss in changes.items():
            for s, b in zip(ss, fresh[lb], strict=True):
                h = s.health
                if h is None:
                    continue
                # Keyed by identity: a member of a hand-written state may have no id.
                built = {be.identity: be for be in b.service.backends}
                mine: dict[str, Target | None] = {}
                for m in s.backends:
                    ident = services.identity(m) or ""
                    addr = m.monitor_address or m.address
                    be = built.get(ident)
                    ip = ipaddress.ip_address(addr) if addr is not None else None
                    # Behind a tunnel: checked through it, as the data plane reaches the member.
                    tunnel = None
                    if be is not None and be.tunnel and be.vtep is not None:
                        tunnel = Overlay(s.segment.type, be.vni, be.vtep, be.hop_mac)
                    seg = m.vlan if tunnel is None else (tunnel.kind, tunnel.vni)
                    if checker is None or ip is None or be is None or not checker.can_check(seg, ip.version, tunnel):
                        mine[ident] = None
                        continue
                    port = 0 if h.type == "ping" else (m.monitor_port or s.port)
                    mine[ident] = Target(
                        h.type, m.vlan, be.mac, ip, port, h.delay, h.timeout, h.rise, h.fall, overlay=tunnel
                    )
                fresh_targets[b.rule_id] = mine
        if not gone and not fresh_targets:
            return  # no checked service changed: nothing to walk
        # A new dict, not changed in place: the metrics collector reads it from another thread.
        targets = {rid: t for rid, t in self.health_targets.items() if rid not in gone}
        targets.update(fresh_targets)
        if checker is not None:
            checker.update({t for mine in targets.values() for t in mine.values() if t is not None})
        self.health_targets = targets

    def _down(self, rule_id: str) -> list[str]:
        if self.health is None:
            return []
        return [m for m, t in self.health_targets.get(rule_id, {}).items() if t is not None and self.health.is_down(t)]

    def _health_changed(self, target: Target | None = None) -> None:
        """A backend went up or down: tell the operator (through the node's
        registration, which it watches), which then reads the node's state."""
        if target is None:
            self.reports.changed(None)
        else:
            self.reports.changed({owner(rid) for rid, mine in self.health_targets.items() if target in mine.values()})
        self.health_epoch += 1
        if self.registration is not None:
            self.registration.update(health_epoch=self.health_epoch)

    # -- resolution --------------------------------------------------------

    async def _ask(self, keys: list[NeighborKey]) -> bool:
        """Ask for keys, record the answers; True if a MAC appeared or changed."""
        t0 = time.monotonic()
        answers = await self.resolver.resolve(keys, self.config.resolve_timeout)
        now = time.monotonic()
        moved = False
        for key in keys:
            mac = answers.get(key)
            before = self.neighbors.mac(key)
            result = self.neighbors.record(key, mac, now)
            if result is None:
                continue
            self.metrics.resolutions.labels(family(key[1]), result).inc()
            if result in ("resolved", "changed"):
                moved = True
                log.info(
                    "neighbor %s vlan=%d address=%s mac=%s%s",
                    result,
                    key[0],
                    key[1],
                    mac,
                    f" was={before}" if before else "",
                )
            elif result == "timeout" and self.neighbors.entries[key].failures == 1:
                if before:
                    log.warning(
                        "neighbor stale vlan=%d address=%s: no answer, keeping mac=%s and asking again",
                        key[0],
                        key[1],
                        before,
                    )
                else:
                    log.info(
                        "neighbor unresolved vlan=%d address=%s: left out of the tables, asking every %gs",
                        key[0],
                        key[1],
                        self.config.retry_interval,
                    )
        log.debug("asked=%d answered=%d in %.3fs", len(keys), len(answers), time.monotonic() - t0)
        return moved

    async def _resolve_loop(self) -> None:
        """Ask again for what is due; re-apply when a MAC appeared or changed."""
        while True:
            await asyncio.sleep(min(0.5, self.config.retry_interval))
            if self.desired is None:
                continue  # nothing to resolve before the first PUT (after a restart, too)
            try:
                await self._resolve_round()
            except (DataplaneError, BpfError, OSError, ValueError) as exc:
                # The re-apply stays pending: the next round tries again.
                self.error = f"re-apply after a MAC change failed: {exc}"
                log.error("re-apply failed: %s", exc)
            except Exception:
                log.exception("resolution round failed")

    async def _resolve_round(self) -> None:
        due = self.neighbors.due(time.monotonic())
        if due and await self._ask(due):
            self._reapply = True
            self._save_neighbors()
        if self._reapply:
            async with self._lock:
                if self.desired is not None and self._reapply:
                    # Every table again, with the MACs as they are now.
                    await self._apply(dict(self.held), "resolve", self.generation, full=True)

    def _save_neighbors(self, force: bool = False) -> None:
        """Write the MACs known, when they changed since the last write (an
        apply that resolved nothing new does not rewrite every MAC)."""
        if self.config.neighbor_file is None or self._dp_identity is None:
            return
        if not force and self.neighbors.changes == self._neighbors_saved:
            return
        try:
            self._neighbors_saved = self.neighbors.changes
            self.neighbors.save(self.config.neighbor_file, self._dp_identity)
        except OSError as exc:
            log.warning("cannot save the neighbour cache %s: %s", self.config.neighbor_file, exc)
