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
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from xdsr.model import keys
from xdsr.model.agent import AgentState, DesiredState, RuleService, ServiceReport
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.operator.agents import AgentClient
from xdsr.operator.capacity import ZERO, Cost, add, cost, sub
from xdsr.operator.compile import Compiled, ServiceKey, service_key
from xdsr.operator.status import NodeReport
from xdsr.store.base import Store
from xdsr.store.informer import Informer


class Version:
    """One version of a group's rules, by which load balancers changed from
    the version before: a delta between two versions looks only at what
    changed in between, not at the whole group."""

    __slots__ = ("changed", "prev")

    # How many versions back a delta is computed from the changes (older
    # ones are forgotten); a node further behind is compared load balancer
    # by load balancer, as after a restart.
    DEPTH = 256

    def __init__(self, changed: frozenset[str], prev: Version | None) -> None:
        self.changed = changed
        self.prev = prev
        v = prev
        for _ in range(self.DEPTH - 2):
            if v is None:
                return
            v = v.prev
        if v is not None:
            v.prev = None

    def since(self, base: Version) -> set[str] | None:
        """The load balancers that changed from base to this version (None:
        base is not among the versions kept)."""
        out: set[str] = set()
        v: Version | None = self
        while v is not None:
            if v is base:
                return out
            out |= v.changed
            v = v.prev
        return None


class Revisions(Mapping[str, int]):
    """lb id -> rules revision of a target, without copying them."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def __getitem__(self, lb_id: str) -> int:
        return self.target.placed[lb_id][1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.target.placed)

    def __len__(self) -> int:
        return len(self.target.placed)


@dataclass(frozen=True, eq=False)
class Target:
    """What a group's nodes must hold: its rules at one generation of one
    epoch. What a group holds is a function of its generation (any change
    under its prefix raises it), so a node known to be at a generation is
    known to hold these rules."""

    epoch: str
    generation: int
    placed: dict[str, tuple[PlacedLoadBalancer, int]]  # lb id -> (its rules, their revision)
    version: Version | None = None  # the version of the group's rules `placed` is
    # The states made for the group's nodes, by base: nodes in step get the
    # very same state (made and encoded once, not once per node).
    _made: dict[object, tuple[DesiredState, set[str] | None]] = field(default_factory=dict, repr=False)

    def revisions(self) -> Mapping[str, int]:
        """lb id -> rules revision; shared by the group's nodes, not to be changed."""
        return Revisions(self)

    def full(self) -> DesiredState:
        made = self._made.get(None)
        if made is None:
            services = [s for p, _ in sorted(self.placed.values(), key=lambda x: x[1]) for s in p.services]
            state = DesiredState.model_construct(
                generation=self.generation, epoch=self.epoch, base=None, changes={}, services=services
            )
            made = self._made[None] = (state, None)
        return made[0]

    def delta(self, base: int, held: Mapping[str, int]) -> tuple[DesiredState, set[str]]:
        """From a node holding `held` (lb id -> rules revision) at generation
        base: the services of the load balancers that changed since, and which.

        When held is another target's revisions and that target's version
        is one of the last few of this group, only the load balancers that
        changed in between are compared: the cost is the change's, not the
        group's."""
        candidates: Iterable[str] | None = None
        memo: object = None
        if isinstance(held, Revisions) and self.version is not None and held.target.version is not None:
            # Held by a target of this group: every node that got it holds the same.
            memo = (base, held.target.version)
            made = self._made.get(memo)
            if made is not None:
                assert made[1] is not None
                return made[0], made[1]
            candidates = self.version.since(held.target.version)
        if candidates is None:
            candidates = self.placed.keys() | held.keys()
        changes: dict[str, list[RuleService]] = {}
        for lb_id in candidates:
            got = self.placed.get(lb_id)
            if got is not None:
                if held.get(lb_id) != got[1]:
                    changes[lb_id] = got[0].services
            elif lb_id in held:
                changes[lb_id] = []
        state = DesiredState.model_construct(
            generation=self.generation, epoch=self.epoch, base=base, changes=changes, services=[]
        )
        if memo is not None:
            self._made[memo] = (state, set(changes))
        return state, set(changes)


def group_epoch(name: str, doc: Group) -> str:
    return f"{name}:{doc.uid}"


@dataclass
class Node:
    """The operator's view of one LB node."""

    name: str
    record: LbnRecord | None = None
    state: AgentState | None = None  # its generation and epoch; its reports are in by_lb
    error: str | None = None
    wanted: Target | None = None
    last_contact: float = 0.0
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    poll: bool = False  # read its state at the next kick (a backend it checks went up or down)
    # What it holds (lb id -> rules revision) at state.generation, when
    # known: the base of the next delta. None: it gets the full state.
    acked: dict[str, int] | None = None
    by_lb: dict[str, list[ServiceReport]] = field(default_factory=dict)  # its service reports by load balancer
    answers: int = 0  # pushes it has answered: a poll answered across one is older than the push's answer
    bytes_sent: int = 0  # bodies of PUT /v1/state, for the benchmark
    full_pushes: int = 0
    delta_pushes: int = 0
    failures: int = 0  # pushes failed in a row: the backoff grows with them (nodes.py)
    # Where by_lb stands in the node's report sequence (agent instance, seq):
    # a poll asks only for what changed after it. None: the next read is whole.
    reports_at: tuple[str, int] | None = None
    full_read_at: float = 0.0  # monotonic time of the last whole read (counters of every service)
    # The push on its way to it and since when (None: none): the status of
    # a change it carries waits for its answer (writeback.py), not longer
    # than settings.status_wait.
    in_flight: tuple[float, Target] | None = None
    pushed_at: float = 0.0  # monotonic time the last delta was sent (nodes.py paces a burst's pushes)


@dataclass
class Settings:
    group_size: int = 3
    resync: float = 10.0  # seconds between full passes and node polls without events
    stats_interval: float = 5.0  # at most this often a status is rewritten only for counters
    # A poll reads only the reports that changed, and the counters that
    # moved (as fresh as a whole read); every this many seconds it reads
    # everything anyway, should the operator's copy have gone wrong.
    full_read: float = 600.0
    retry: float = 1.0  # delay before pushing again to a node that failed, doubled at each failure in a row
    retry_max: float = 60.0  # ... up to this
    # At most this long a changed load balancer's status waits for the
    # pushes bringing the change to answer, so that it is judged (and
    # written) once, from the answers, rather than once before them too.
    status_wait: float = 1.0
    # A burst of changes (many creates at once) reaches a node in pushes at
    # most this often, each carrying what came meanwhile (nodes.py _gather).
    # A change alone is sent at once, and the last of a burst once no change
    # came for push_quiet.
    push_interval: float = 0.5
    push_quiet: float = 0.05
    # Load balancers changed within this long of a pass that placed some
    # wait for it to have passed (operator.py): a burst's creates are placed
    # and their rules written many to a pass, not one or two.
    place_interval: float = 0.02


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
        self.rules = Informer(store, keys.RULES_PREFIX, PlacedLoadBalancer, on_change=self._rules_changed)
        self.lbns = Informer(store, keys.LBN_PREFIX, LbnRecord, on_change=self._lbn_changed)
        self.nodes: dict[str, Node] = {}
        # The group generation from which a deleted load balancer is gone.
        # Unknown after a restart: then the group's current generation is
        # used (conservative). What a live load balancer needs is the
        # revision of its rules.
        self._removed: dict[str, tuple[str, int]] = {}
        self._stats_written: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.passes = 0
        self.compiled = Compiled()
        # What the passes did (for tests: a pass costs what changed): load
        # balancers checked with the nodes' checks, statuses judged.
        self.checked = 0
        self.judged = 0
        # Whose status may have changed since the last pass: a status is a
        # function of its load balancer and its group's nodes, so only those
        # are computed again (everything, after a node poll).
        self._dirty_lbs: set[str] = set()
        self._dirty_groups: set[str] = set()
        self._all_dirty = True
        # The rules by group, as versions (a new dict per group that
        # changed, made from the one before and the load balancers whose
        # rules changed: every pass reads them, and there may be
        # thousands); who serves each service key.
        self._placed_cache: dict[str, dict[str, tuple[PlacedLoadBalancer, int]]] | None = None
        self._versions: dict[str, Version] = {}
        self._rules_pending: dict[str, set[str]] = {}  # group -> lb ids whose rules changed since
        self._where_cache: dict[str, str] = {}  # lb id -> group, kept with the versions
        self._revision_cache: dict[str, int] = {}  # group -> highest revision among its rules
        self._load_cache: dict[str, Cost] = {}  # group -> what its rules take on each node (capacity.cost)
        # Load balancers the placement pass must look at (all of them after
        # a restart, a failed pass, or a change of nodes or groups).
        self._place_dirty: set[str] = set()
        self._place_all = True
        self._deleting: set[str] = set()  # load balancers marked deleting, until their documents go
        self._owners: dict[ServiceKey, set[str]] = {}
        # Failure containment (placement.py): why a load balancer found no
        # group, and what nodes refused (lb id -> (its placed generation, why)).
        self._unplaced: dict[str, str] = {}
        self._node_refusals: dict[str, tuple[int, str]] = {}

    def _rules_changed(self, name: str, old: object, new: object) -> None:
        group, lb_id = name.split("/", 1)
        self._rules_pending.setdefault(group, set()).add(lb_id)
        for doc in (old, new):
            assert doc is None or isinstance(doc, PlacedLoadBalancer)
        if isinstance(old, PlacedLoadBalancer):
            for s in old.services:
                have = self._owners.get(service_key(s))
                if have is not None:
                    have.discard(lb_id)
                    if not have:
                        del self._owners[service_key(s)]
        if isinstance(new, PlacedLoadBalancer):
            for s in new.services:
                self._owners.setdefault(service_key(s), set()).add(lb_id)
        self._kick.set()

    def _owner(self, key: ServiceKey) -> str | None:
        """The load balancer whose placed rules serve this key (the first by id, should two)."""
        have = self._owners.get(key)
        return min(have) if have else None

    def _lb_changed(self, name: str, _old: object, _new: object) -> None:
        raise NotImplementedError

    def _lbn_changed(self, name: str, _old: object, record: object) -> None:
        raise NotImplementedError

    def _informers(self) -> tuple[Informer, ...]:  # type: ignore[type-arg]
        return (self.lbs, self.statuses, self.groups, self.rules, self.lbns)

    def _group_docs(self) -> dict[str, tuple[Group, int]]:
        return self.groups.entries()

    def _placed(self) -> dict[str, dict[str, tuple[PlacedLoadBalancer, int]]]:
        """group -> lb id -> (its rules, revision). Not to be changed: a
        group's dict is shared until its rules change (then it is replaced)."""
        if self._placed_cache is None:
            out: dict[str, dict[str, tuple[PlacedLoadBalancer, int]]] = {}
            for name, value in self.rules.entries().items():
                group, lb_id = name.split("/", 1)
                out.setdefault(group, {})[lb_id] = value
            self._placed_cache, self._rules_pending = out, {}
            self._versions = {g: Version(frozenset(lbs), None) for g, lbs in out.items()}
            self._where_cache = {lb: g for g, lbs in out.items() for lb in lbs}
            self._revision_cache = {g: max(rev for _, rev in lbs.values()) for g, lbs in out.items()}
            self._load_cache = {g: cost(s for p, _ in lbs.values() for s in p.services) for g, lbs in out.items()}
        elif self._rules_pending:
            pending, self._rules_pending = self._rules_pending, {}
            for group, lb_ids in pending.items():
                self._new_version(group, lb_ids)
        return self._placed_cache

    def _new_version(self, group: str, lb_ids: set[str]) -> None:
        assert self._placed_cache is not None
        old = self._placed_cache.get(group, {})
        lbs = dict(old)
        top, recount = self._revision_cache.get(group, 0), False
        load = self._load_cache.get(group, ZERO)
        for lb_id in lb_ids:
            got = self.rules.entry(f"{group}/{lb_id}")
            before = old.get(lb_id)
            if before is not None:
                load = sub(load, cost(before[0].services))
            if got is not None:
                lbs[lb_id] = got
                load = add(load, cost(got[0].services))
                self._where_cache[lb_id] = group
                top = max(top, got[1])
            elif lbs.pop(lb_id, None) is not None:
                recount = True
                if self._where_cache.get(lb_id) == group:
                    del self._where_cache[lb_id]
        if recount:
            top = max((rev for _, rev in lbs.values()), default=0)
        if lbs:
            self._placed_cache[group] = lbs
            self._revision_cache[group] = top
            self._load_cache[group] = load
            self._versions[group] = Version(frozenset(lb_ids), self._versions.get(group))
        else:
            self._placed_cache.pop(group, None)
            self._revision_cache.pop(group, None)
            self._load_cache.pop(group, None)
            self._versions.pop(group, None)

    def _target(
        self, group: str, epoch: str, generation: int, placed: dict[str, tuple[PlacedLoadBalancer, int]]
    ) -> Target:
        """What the group's nodes must hold, with the version of its rules
        when `placed` is the current one (deltas then cost what changed)."""
        current = self._placed_cache is not None and self._placed_cache.get(group) is placed
        return Target(epoch, generation, placed, self._versions.get(group) if current else None)

    def _loads(self) -> dict[str, Cost]:
        """group -> what its rules take on each node, kept as they change
        (counting the whole group at every change would cost what the group
        holds). Not to be changed."""
        self._placed()
        return self._load_cache

    def _placement_index(self) -> dict[str, str]:
        """lb id -> its group. Not to be changed: kept as the rules change."""
        self._placed()
        return self._where_cache

    def _generation(self, group: str, placed: dict[str, tuple[PlacedLoadBalancer, int]] | None = None) -> int:
        """What the group's nodes must reach: the latest change to the group
        or any of its rules (a deletion bumps the group document)."""
        doc = self._group_docs().get(group)
        if placed is None or placed is self._placed().get(group):
            self._placed()
            top = self._revision_cache.get(group, 0)
        else:
            top = max((rev for _, rev in placed.values()), default=0)
        return max(doc[1] if doc else 0, top)

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
            rec = live.get(name)
            out.append(NodeReport(name, rec is not None, state, node.error if node else None, rec.bgp if rec else None))
        return out

    def _by_lb(self, node: Node, state: AgentState) -> dict[str, list[ServiceReport]]:
        """The node's service reports by load balancer id (nodes.py keeps them
        from full reports and from the partial answers to deltas)."""
        return node.by_lb

    async def _concurrently(self, writes: Iterable[Awaitable[object]], limit: int = 32) -> None:
        """Store writes in flight together: etcd commits concurrent writes
        with one disk sync, so many statuses cost about what one does."""
        sem = asyncio.Semaphore(limit)

        async def one(w: Awaitable[object]) -> None:
            async with sem:
                await w

        await asyncio.gather(*(one(w) for w in writes))
