"""The operator's view: what every pass reads.

The store's documents (kept current by informers), the operator's own
record of each LB node, and what it remembers between passes; with the
questions each pass asks of them (which group holds a load balancer, what
generation a group's nodes must reach, what a node says of a load
balancer). The passes themselves are in placement.py, nodes.py and
writeback.py; operator.py runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

from xdsr.model import keys
from xdsr.model.agent import AgentState, DesiredState, ServiceReport
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.operator.agents import AgentClient
from xdsr.operator.compile import Compiled
from xdsr.operator.status import NodeReport
from xdsr.store.base import Store
from xdsr.store.informer import Informer


@dataclass
class Node:
    """The operator's view of one LB node."""

    name: str
    record: LbnRecord | None = None
    state: AgentState | None = None
    error: str | None = None
    wanted: DesiredState | None = None
    last_contact: float = 0.0
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    poll: bool = False  # read its state at the next kick (a backend it checks went up or down)


@dataclass
class Settings:
    group_size: int = 3
    resync: float = 10.0  # seconds between full passes and node polls without events
    stats_interval: float = 5.0  # at most this often a status is rewritten only for counters
    retry: float = 1.0  # delay before pushing again to a node that failed


class View:
    def __init__(self, store: Store, agents: AgentClient, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.agents = agents
        self._kick = asyncio.Event()
        kick = lambda *_: self._kick.set()  # noqa: E731
        self.lbs = Informer(store, keys.LB_PREFIX, LoadBalancer, on_change=self._lb_changed)
        self.statuses = Informer(store, keys.STATUS_PREFIX, LoadBalancerStatus)
        self.groups = Informer(store, keys.GROUP_PREFIX, Group, on_change=kick)
        self.rules = Informer(store, keys.RULES_PREFIX, PlacedLoadBalancer, on_change=kick)
        self.lbns = Informer(store, keys.LBN_PREFIX, LbnRecord, on_change=self._lbn_changed)
        self.nodes: dict[str, Node] = {}
        # Group generation holding each load balancer's latest change, and
        # the one from which a deleted load balancer is gone. Unknown after a
        # restart: then the group's current generation is used (conservative).
        self._needed: dict[str, int] = {}
        self._removed: dict[str, tuple[str, int]] = {}
        self._stats_written: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.passes = 0
        self.compiled = Compiled()
        # Whose status may have changed since the last pass: a status is a
        # function of its load balancer and its group's nodes, so only those
        # are computed again (everything, after a node poll).
        self._dirty_lbs: set[str] = set()
        self._dirty_groups: set[str] = set()
        self._all_dirty = True
        self._report_index: dict[str, tuple[AgentState, dict[str, list[ServiceReport]]]] = {}

    def _lb_changed(self, name: str, _old: object, _new: object) -> None:
        raise NotImplementedError

    def _lbn_changed(self, name: str, _old: object, record: object) -> None:
        raise NotImplementedError

    def _informers(self) -> tuple[Informer, ...]:  # type: ignore[type-arg]
        return (self.lbs, self.statuses, self.groups, self.rules, self.lbns)

    def _group_docs(self) -> dict[str, tuple[Group, int]]:
        return self.groups.entries()

    def _placed(self) -> dict[str, dict[str, tuple[PlacedLoadBalancer, int]]]:
        """group -> lb id -> (its rules, revision)."""
        out: dict[str, dict[str, tuple[PlacedLoadBalancer, int]]] = {}
        for name, value in self.rules.entries().items():
            group, lb_id = name.split("/", 1)
            out.setdefault(group, {})[lb_id] = value
        return out

    def _placement_index(self) -> dict[str, str]:
        return {lb: g for g, lbs in self._placed().items() for lb in lbs}

    def _generation(self, group: str, placed: dict[str, tuple[PlacedLoadBalancer, int]] | None = None) -> int:
        """What the group's nodes must reach: the latest change to the group
        or any of its rules (a deletion bumps the group document)."""
        doc = self._group_docs().get(group)
        revs = [rev for _, rev in (placed if placed is not None else self._placed().get(group, {})).values()]
        return max([doc[1] if doc else 0, *revs])

    def _live(self) -> dict[str, LbnRecord]:
        return {name: rec for name, (rec, _) in self.lbns.entries().items()}

    def _reports(self, group: str | None, lb_id: str) -> list[NodeReport]:
        """What each node of the group says, narrowed to one load balancer's
        services: a node reports every service of its group, and scanning
        them all for each load balancer would make a pass quadratic (18 s
        for 4096 load balancers on one group)."""
        if group is None:
            return []
        doc = self._group_docs().get(group)
        if doc is None:
            return []
        live = self._live()
        out = []
        for name in doc[0].lbns:
            node = self.nodes.get(name)
            state = node.state if node else None
            if node is not None and state is not None:
                mine = self._by_lb(node, state).get(lb_id, [])
                state = state.model_copy(update={"services": mine})
            out.append(NodeReport(name, name in live, state, node.error if node else None))
        return out

    def _by_lb(self, node: Node, state: AgentState) -> dict[str, list[ServiceReport]]:
        """The node's service reports by load balancer id, built once per state."""
        cached = self._report_index.get(node.name)
        if cached is not None and cached[0] is state:
            return cached[1]
        index: dict[str, list[ServiceReport]] = {}
        for r in state.services:
            index.setdefault(r.id.split("/", 1)[0], []).append(r)
        self._report_index[node.name] = (state, index)
        return index

    async def _concurrently(self, writes: Iterable[Awaitable[object]], limit: int = 32) -> None:
        """Store writes in flight together: etcd commits concurrent writes
        with one disk sync, so many statuses cost about what one does."""
        sem = asyncio.Semaphore(limit)

        async def one(w: Awaitable[object]) -> None:
            async with sem:
                await w

        await asyncio.gather(*(one(w) for w in writes))
