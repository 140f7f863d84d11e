"""The operator's passes over the in-memory store: no etcd, no processes.

The LB nodes are in-process too (Nodes below): each answers a pushed state
as an agent does, judged by the agent's own checks and built by the same
code (xdsr.dataplane.services), with no data plane behind it. Each test
drives reconcile passes by hand and looks at what the operator wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from xdsr.agent import rules as agent_rules
from xdsr.agent.reports import ReportLog
from xdsr.dataplane import services, tables
from xdsr.maglev import default_table_size
from xdsr.model import keys
from xdsr.model.agent import AgentState, DesiredState, RuleService, ServiceReport, owner
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import Listener, LoadBalancer, LoadBalancerStatus, Member, Pool
from xdsr.operator.agents import AgentError
from xdsr.operator.operator import Operator, Settings
from xdsr.store.base import Conflict, Put
from xdsr.store.docs import dump, get_doc
from xdsr.store.memory import MemoryStore

NOW = "2026-11-26T00:00:00Z"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Nodes:
    """The agents of the LB nodes, by endpoint: full states and deltas, as an agent takes them."""

    def __init__(self) -> None:
        self.held: dict[str, AgentState] = {}
        self.rules: dict[str, dict[str, list[RuleService]]] = {}  # endpoint -> lb id -> services held
        self.unreachable: set[str] = set()
        self.pushes = 0
        self.bodies: list[tuple[str, DesiredState, int]] = []  # (endpoint, what was sent, bytes)
        self.refused = 0
        # What one node alone refuses (a node-specific failure): (endpoint, service) -> why, or None.
        self.refuses: Callable[[str, RuleService], str | None] = lambda _e, _s: None
        self.slot_chunks = 1 << 30  # the slot memory of every node, in chunks
        # The report sequence of each agent, as the agent keeps it (agent/reports.py).
        self.logs: dict[str, ReportLog] = {}
        self.polls: list[tuple[str, tuple[str, int] | None, AgentState]] = []  # (endpoint, since, answer)

    async def push(self, endpoint: str, state: DesiredState) -> tuple[AgentState, int]:
        """AgentClient.push: the state in one body (these states are small)."""
        body = state.model_dump_json(exclude_defaults=True).encode()
        return await self.put_state(endpoint, body), len(body)

    async def put_state(self, endpoint: str, state: DesiredState | bytes) -> AgentState:
        if endpoint in self.unreachable:
            raise AgentError(f"{endpoint}: connection refused")
        size = len(state) if isinstance(state, bytes) else len(state.model_dump_json())
        if isinstance(state, bytes):
            state = DesiredState.model_validate_json(state)
        self.pushes += 1
        self.bodies.append((endpoint, state, size))
        current = self.held.get(endpoint)
        same_epoch = current is not None and current.epoch == state.epoch
        if state.is_delta:
            if current is None or not same_epoch or current.generation != state.base:
                self.refused += 1
                return (current or AgentState(name=endpoint)).model_copy(update={"services": [], "partial": True})
            rules = dict(self.rules[endpoint])
            for lb, ss in state.changes.items():
                if ss:
                    rules[lb] = ss
                else:
                    rules.pop(lb, None)
        else:
            if current is not None and same_epoch and current.generation >= state.generation:
                return current  # the agent's 409 / no-op: it keeps its own
            rules = {}
            for s in state.services:
                rules.setdefault(owner(s.id), []).append(s)
        everything = [s for ss in rules.values() for s in ss]
        # The agent's own checks (agent/rules.py), and what this node alone
        # refuses: its answer names each bad service as the agent's does.
        try:
            if state.is_delta:
                held = self.rules[endpoint]
                keys_ = {services.service_key(s): s.id or "" for ss in held.values() for s in ss}
                count = sum(len(ss) for ss in held.values())
                agent_rules.validate_delta(state, held, count, keys_, 4096)
            else:
                agent_rules.validate(state, 4096)
            where = (
                [(f"changes.{lb}[{j}]", s) for lb, ss in state.changes.items() for j, s in enumerate(ss)]
                if state.is_delta
                else [(f"services[{i}]", s) for i, s in enumerate(state.services)]
            )
            mine = [services.FieldError(f, why) for f, s in where if (why := self.refuses(endpoint, s))]
            if mine:
                raise services.InvalidState(mine)
        except services.InvalidState as exc:
            errors = [(e.field, e.message) for e in exc.errors]
            raise AgentError(f"{endpoint}: HTTP 422: {exc}", 422, errors) from None
        chunks = sum(tables.slot_chunks(s.table_size or 0, len(s.backends)) for s in everything)
        if chunks > self.slot_chunks:
            # As the data plane says it (state.py): a 500 naming no service.
            raise AgentError(f"{endpoint}: HTTP 500: no room for {chunks} slot chunks", 500)
        reports = []
        # A service kept or updated keeps its counters (its stats slot: dataplane/state.py).
        counted = {r.id: (r.packets, r.bytes) for r in current.services} if current is not None else {}
        for s in everything:
            built, unresolved = services.to_service(s)  # MACs given only: nothing is resolved here
            packets, bytes_ = counted.get(services.report_id(s), (0, 0))
            reports.append(
                ServiceReport(
                    id=services.report_id(s),
                    ok=True,
                    active_backends=built.active_backends,
                    unresolved=list(unresolved),
                    packets=packets,
                    bytes=bytes_,
                )
            )
        self.rules[endpoint] = rules
        self._reports_changed(endpoint, reports)
        self.held[endpoint] = AgentState(
            name=endpoint,
            generation=state.generation,
            epoch=state.epoch,
            services=reports,
            applied_at=0.0,
            apply_seconds=0.0,
            instance=self._log(endpoint).instance,
            seq=self._log(endpoint).seq,
        )
        if state.is_delta:
            return self.held[endpoint].model_copy(
                update={"services": [r for r in reports if owner(r.id) in state.changes], "partial": True}
            )
        return self.held[endpoint]

    def _log(self, endpoint: str) -> ReportLog:
        return self.logs.setdefault(endpoint, ReportLog())

    def _reports_changed(self, endpoint: str, reports: list[ServiceReport]) -> None:
        def by_lb(rs: list[ServiceReport]) -> dict[str, list[ServiceReport]]:
            out: dict[str, list[ServiceReport]] = {}
            for r in rs:
                out.setdefault(owner(r.id), []).append(r)
            return out

        before = by_lb(self.held[endpoint].services if endpoint in self.held else [])
        after = by_lb(reports)
        changed = {lb for lb in before.keys() | after.keys() if before.get(lb) != after.get(lb)}
        if changed:
            self._log(endpoint).changed(changed)

    def traffic(self, node: str, service_id: str, packets: int, bytes_: int) -> None:
        """The node forwarded packets for a service: its counters move, nothing else."""
        held = self.held[endpoint(node)]
        reports = [
            r.model_copy(update={"packets": packets, "bytes": bytes_}) if r.id == service_id else r
            for r in held.services
        ]
        self.held[endpoint(node)] = held.model_copy(update={"services": reports})

    async def get_state(self, endpoint: str, since: tuple[str, int] | None = None) -> AgentState:
        """Whole; or, since (instance, seq) of this very agent, what changed
        after it: as the agent answers (agent/core.py, every counter read)."""
        if endpoint in self.unreachable:
            raise AgentError(f"{endpoint}: connection refused")
        log = self._log(endpoint)
        read_at = log.seq
        lbs = log.changed_since(since[1]) if since is not None and log.known(*since) else None
        got = self.held.get(endpoint, AgentState(name=endpoint))
        seq = log.counted({r.id: (r.packets, r.bytes) for r in got.services}, read_at)
        got = got.model_copy(update={"instance": log.instance, "seq": seq})
        if since is not None and lbs is not None:
            mine = [r for r in got.services if owner(r.id) in lbs]
            counters = log.moved_since(since[1], lbs)
            got = got.model_copy(
                update={"partial": True, "changed": sorted(lbs), "services": mine, "counters": counters}
            )
        self.polls.append((endpoint, since, got))
        return got

    async def close(self) -> None:
        pass

    def services_of(self, node: str) -> list[str]:
        return [s.id for s in self.held[endpoint(node)].services] if endpoint(node) in self.held else []

    def restart(self, node: str) -> None:
        """The node's agent starts again with empty maps: another instance."""
        self.held.pop(endpoint(node), None)
        self.rules.pop(endpoint(node), None)
        self.logs.pop(endpoint(node), None)


def endpoint(node: str) -> str:
    return f"http://{node}.test:9101"


@dataclass
class World:
    store: MemoryStore
    op: Operator
    nodes: Nodes
    clock: Clock

    async def register(
        self, name: str, *, group: str | None = None, ttl: int = 10, max_services: int = 4096, slot_chunks: int = 0
    ) -> int:
        lease = await self.store.grant_lease(ttl)
        record = LbnRecord(
            name=name,
            endpoint=endpoint(name),
            group=group,
            started_at=1.0,
            max_services=max_services,
            slot_chunks=slot_chunks,
        )
        rev = await self.store.put(keys.lbn_key(name), dump(record), lease=lease)
        await self.op.lbns.wait_for(rev)
        return lease

    async def put_lb(self, lb: LoadBalancer) -> None:
        got = await get_doc(self.store, keys.lb_key(lb.id), LoadBalancer)
        rev = await self.store.put(keys.lb_key(lb.id), dump(lb), expect=got[1] if got else 0)
        await self.op.lbs.wait_for(rev)

    async def converge(self, passes: int = 6) -> None:
        """Passes until one writes nothing and every live node holds what it
        should (the node workers push between passes)."""
        for _ in range(passes):
            _, before = await self.store.list("/")
            await self.op.reconcile()
            await self.pushed()
            _, after = await self.store.list("/")
            if after == before:
                return
            await self._caught_up(after)
        raise AssertionError(f"no fixed point after {passes} passes")

    async def _caught_up(self, revision: int) -> None:
        # Our informers saw every write of the pass (each watches its prefix).
        for inf in self.op._informers():
            items, _ = await self.store.list(inf.prefix)
            if items:
                await inf.wait_for(max(i.mod_revision for i in items))

    async def pushed(self, timeout: float = 5.0) -> None:
        await until(
            lambda: all(
                n.wanted is None
                or n.record is None
                or endpoint(n.name) in self.nodes.unreachable
                or n.name not in self.op._live()
                or (n.state is not None and n.state.generation == n.wanted.generation)
                for n in self.op.nodes.values()
            ),
            timeout,
            "the node workers did not push",
        )

    async def status(self, lb_id: str) -> LoadBalancerStatus | None:
        got = await get_doc(self.store, keys.status_key(lb_id), LoadBalancerStatus)
        return got[0] if got else None

    async def groups(self) -> dict[str, list[str]]:
        items, _ = await self.store.list(keys.GROUP_PREFIX)
        return {keys.last_part(i.key): Group.model_validate_json(i.value).lbns for i in items}

    async def placed(self) -> dict[str, PlacedLoadBalancer]:
        """'<group>/<lb id>' -> its rules."""
        items, _ = await self.store.list(keys.RULES_PREFIX)
        return {"/".join(keys.rules_parts(i.key)): PlacedLoadBalancer.model_validate_json(i.value) for i in items}


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def world(group_size: int = 3) -> AsyncIterator[World]:
    clock = Clock()
    store = MemoryStore(clock=clock)
    nodes = Nodes()
    op = Operator(store, "token", Settings(group_size=group_size, retry=0.01), agents=nodes)  # type: ignore[arg-type]
    for inf in op._informers():
        inf.start()
    for inf in op._informers():
        assert await inf.wait_synced(5)
    try:
        yield World(store, op, nodes, clock)
    finally:
        await op.stop()
        await store.close()


def run(body: Callable[[], object]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def load_balancer(lb_id: str = "lb1", vip: str = "203.0.113.10", n_members: int = 2, **extra: object) -> LoadBalancer:
    members = [
        Member(
            id=f"{lb_id}-m{i}",
            project_id="p",
            created_at=NOW,
            address=f"10.1.0.{11 + i}",
            mac_address=f"02:00:00:00:00:{11 + i:02x}",
            protocol_port=80,
        )
        for i in range(n_members)
    ]
    doc = LoadBalancer(
        id=lb_id,
        project_id="p",
        created_at=NOW,
        vip_address=vip,
        vip_segment={"type": "vlan", "id": 10},
        generation=1,
        listeners=[
            Listener(id="l1", project_id="p", created_at=NOW, protocol="TCP", protocol_port=80, default_pool_id="p1")
        ],
        pools=[
            Pool(id="p1", project_id="p", created_at=NOW, protocol="TCP", lb_algorithm="ROUND_ROBIN", members=members)
        ],
    )
    return doc.model_copy(update=extra)


# --- node registration ------------------------------------------------------


def test_nodes_fill_groups_of_the_configured_size_and_may_ask_for_one() -> None:
    async def body() -> None:
        async with world(group_size=2) as w:
            for name in ("n1", "n2", "n3"):
                await w.register(name)
            await w.converge()
            assert await w.groups() == {"g1": ["n1", "n2"], "g2": ["n3"]}
            await w.register("n4", group="edge")
            await w.converge()
            assert (await w.groups())["edge"] == ["n4"]

    run(body)


def test_a_node_whose_lease_expires_gets_no_more_pushes() -> None:
    async def body() -> None:
        async with world(group_size=2) as w:
            await w.register("n1", ttl=60)
            lease2 = await w.register("n2", ttl=10)
            await w.put_lb(load_balancer())
            await w.converge()
            first = w.nodes.held[endpoint("n2")].generation
            assert w.nodes.held[endpoint("n1")].generation == first

            w.clock.now += 11  # n2 stopped renewing its lease
            assert await w.store.keep_alive(lease2) is False
            await until(lambda: "n2" not in w.op._live(), 5, "the informer did not see the record go")

            await w.put_lb(load_balancer(generation=2, n_members=3))
            await w.converge()
            assert w.nodes.held[endpoint("n1")].generation > first
            assert w.nodes.held[endpoint("n2")].generation == first  # not pushed to any more
            status = await w.status("lb1")
            assert status is not None and status.observed_generation == 2  # the live node is the group now
            assert status.lbns["n2"].error == "not registered (down)"

    run(body)


# --- placement and compile --------------------------------------------------


def test_a_load_balancer_is_compiled_placed_and_pushed_to_its_group() -> None:
    async def body() -> None:
        async with world(group_size=2) as w:
            await w.register("n1")
            await w.register("n2")
            await w.put_lb(load_balancer())
            await w.converge()

            placed = await w.placed()
            assert list(placed) == ["g1/lb1"]
            rules = placed["g1/lb1"]
            (svc,) = rules.services
            assert (svc.id, str(svc.vip), svc.port, svc.protocol, svc.segment.id) == (
                "lb1/l1",
                "203.0.113.10",
                80,
                "tcp",
                10,
            )
            assert [(b.id, b.mac, b.vlan) for b in svc.backends] == [
                ("lb1-m0", "02:00:00:00:00:0b", 10),
                ("lb1-m1", "02:00:00:00:00:0c", 10),
            ]
            assert svc.table_size == default_table_size(2)  # settled by the operator, sent explicitly

            # Both nodes hold the group's rules at the group's generation.
            rev = (await w.store.get(keys.rules_key("g1", "lb1"))).mod_revision  # type: ignore[union-attr]
            for node in ("n1", "n2"):
                assert w.nodes.held[endpoint(node)].generation == rev
                assert w.nodes.services_of(node) == ["lb1/l1"]

    run(body)


def test_load_balancers_go_to_the_group_with_the_fewest_services() -> None:
    async def body() -> None:
        async with world(group_size=1) as w:
            await w.register("n1")
            await w.register("n2")
            await w.converge()
            for i in range(3):
                await w.put_lb(load_balancer(f"lb{i}", vip=f"203.0.113.{10 + i}"))
                await w.converge()
            by_group: dict[str, list[str]] = {}
            for name in await w.placed():
                group, lb_id = name.split("/")
                by_group.setdefault(group, []).append(lb_id)
            assert sorted(len(v) for v in by_group.values()) == [1, 2]
            # A load balancer that names its group goes there, however full.
            fuller = max(by_group, key=lambda g: len(by_group[g]))
            await w.put_lb(load_balancer("lb9", vip="203.0.113.99", lbn_group=fuller))
            await w.converge()
            assert f"{fuller}/lb9" in await w.placed()

    run(body)


def test_a_second_load_balancer_on_the_same_service_key_is_refused() -> None:
    async def body() -> None:
        async with world() as w:
            await w.register("n1")
            await w.put_lb(load_balancer("lb1"))
            await w.converge()
            await w.put_lb(load_balancer("lb2", created_at="2026-11-27T00:00:00Z"))
            await w.converge()
            assert [s.id for s in (await w.placed())["g1/lb2"].services] == []
            status = await w.status("lb2")
            assert status is not None and status.provisioning_status == "ERROR"
            assert "already served by load balancer lb1" in (status.error or "")
            assert status.listeners["l1"].provisioning_status == "ERROR"
            assert w.nodes.services_of("n1") == ["lb1/l1"]

    run(body)


# --- status -------------------------------------------------------------------


def test_status_follows_the_nodes_and_is_written_only_when_it_changes() -> None:
    async def body() -> None:
        async with world() as w:
            await w.register("n1")
            await w.register("n2")
            await w.put_lb(load_balancer())
            await w.converge()
            status = await w.status("lb1")
            assert status is not None
            assert (status.observed_generation, status.group, status.provisioning_status, status.operating_status) == (
                1, "g1", "ACTIVE", "ONLINE",
            )  # fmt: skip
            assert {n: r.forwarding for n, r in status.lbns.items()} == {"n1": True, "n2": True}
            written = (await w.store.get(keys.status_key("lb1"))).mod_revision  # type: ignore[union-attr]

            await w.converge()  # nothing changed: nothing written
            await w.op._poll_nodes()  # fresh answers, the same: every status computed again, none written
            await w.converge()
            assert (await w.store.get(keys.status_key("lb1"))).mod_revision == written  # type: ignore[union-attr]

            # A node that cannot be reached holds the old generation: the new
            # one is not observed until it has it.
            w.nodes.unreachable.add(endpoint("n2"))
            await w.put_lb(load_balancer(generation=2, n_members=3))
            await w.converge()
            status = await w.status("lb1")
            assert status is not None and status.observed_generation == 1
            assert "connection refused" in (status.lbns["n2"].error or "")
            w.nodes.unreachable.clear()
            await until(lambda: w.op.nodes["n2"].error is None, 5, "the node worker did not retry")
            await w.converge()
            status = await w.status("lb1")
            assert status is not None and status.observed_generation == 2 and status.lbns["n2"].error is None

    run(body)


# --- deletion -----------------------------------------------------------------


def test_a_deleted_load_balancer_leaves_its_nodes_then_its_documents_go() -> None:
    async def body() -> None:
        async with world() as w:
            await w.register("n1")
            await w.put_lb(load_balancer("lb1"))
            await w.put_lb(load_balancer("lb2", vip="203.0.113.20"))
            await w.converge()
            assert sorted(w.nodes.services_of("n1")) == ["lb1/l1", "lb2/l1"]

            await w.put_lb(load_balancer("lb1", deleting=True, generation=2))
            await w.converge()
            assert w.nodes.services_of("n1") == ["lb2/l1"]
            assert list(await w.placed()) == ["g1/lb2"]
            assert await w.store.get(keys.lb_key("lb1")) is None
            assert await w.status("lb1") is None
            assert await w.status("lb2") is not None

    run(body)


@pytest.mark.parametrize(("members", "kept"), [(0, True), (4, True), (40, False)])
def test_table_size_is_kept_while_it_fits_the_members(members: int, kept: bool) -> None:
    async def body() -> None:
        async with world() as w:
            await w.register("n1")
            await w.put_lb(load_balancer(n_members=3))
            await w.converge()
            (before,) = (await w.placed())["g1/lb1"].services
            await w.put_lb(load_balancer(n_members=members, generation=2))
            await w.converge()
            (after,) = (await w.placed())["g1/lb1"].services
            assert len(after.backends) == members
            # Kept, Maglev moves only the changed members' flows; too small
            # (or too large) for the members, it is resized to their default.
            assert after.table_size == (before.table_size if kept else default_table_size(members))

    run(body)


# --- cost proportional to the change (issue 10) -------------------------------


class CountingStore(MemoryStore):
    """The memory store, remembering every key written or deleted."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[str] = []
        self.batches: list[list[str]] = []  # the keys of each put_many

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        self.writes.append(key)
        return await super().put(key, value, expect=expect, lease=lease)

    async def put_many(self, puts: Sequence[Put]) -> list[int | Conflict]:
        self.writes.extend(p.key for p in puts)
        self.batches.append([p.key for p in puts])
        return await super().put_many(puts)

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        self.writes.append(key)
        return await super().delete(key, expect=expect)


@contextlib.asynccontextmanager
async def counting_world(n_lbs: int, **settings: float) -> AsyncIterator[World]:
    """Three nodes on one group holding n_lbs load balancers, settled."""
    clock = Clock()
    store = CountingStore(clock=clock)
    nodes = Nodes()
    op = Operator(store, "token", Settings(group_size=3, retry=0.01, **settings), agents=nodes)  # type: ignore[arg-type]
    for inf in op._informers():
        inf.start()
    for inf in op._informers():
        assert await inf.wait_synced(5)
    w = World(store, op, nodes, clock)
    try:
        for name in ("n1", "n2", "n3"):
            await w.register(name)
        for i in range(n_lbs):
            await w.put_lb(load_balancer(f"lb{i}", vip=f"203.0.113.{10 + i}"))
        await w.converge(passes=12)
        yield w
    finally:
        await op.stop()
        await store.close()


def held_rules(w: World, node: str) -> dict[str, list[RuleService]]:
    return w.nodes.rules[endpoint(node)]


def assert_identical_and_complete(w: World) -> None:
    """Every node holds exactly the group's rules as placed in the store."""
    placed = {lb_id: p.services for lb_id, (p, _) in w.op._placed()["g1"].items()}
    for node in ("n1", "n2", "n3"):
        assert held_rules(w, node) == placed, node


def test_a_change_to_one_load_balancer_sends_and_writes_only_that_load_balancer() -> None:
    async def body() -> None:
        async with counting_world(20) as w:
            assert_identical_and_complete(w)
            store = w.store
            assert isinstance(store, CountingStore)
            w.nodes.bodies.clear()
            store.writes.clear()

            await w.put_lb(load_balancer("lb7", vip="203.0.113.17", n_members=3, generation=2))
            store.writes.clear()  # the API server's write; what follows is the operator's
            await w.converge()

            assert len(w.nodes.bodies) == 3  # one push per node
            for _, sent, _ in w.nodes.bodies:
                assert sent.is_delta and not sent.services
                assert list(sent.changes) == ["lb7"]
                (svc,) = sent.changes["lb7"]
                assert [b.id for b in svc.backends] == ["lb7-m0", "lb7-m1", "lb7-m2"]
            # Its rules and its status: no other load balancer's documents.
            assert set(store.writes) == {keys.rules_key("g1", "lb7"), keys.status_key("lb7")}
            assert_identical_and_complete(w)
            status = await w.status("lb7")
            assert status is not None and status.observed_generation == 2

            # A deletion: the group's epoch and the load balancer's documents, nothing else.
            w.nodes.bodies.clear()
            await w.put_lb(load_balancer("lb3", vip="203.0.113.13", generation=2, deleting=True))
            store.writes.clear()
            await w.converge()
            for _, sent, _ in w.nodes.bodies:
                assert sent.is_delta and sent.changes == {"lb3": []}
            assert set(store.writes) == {
                keys.rules_key("g1", "lb3"),
                keys.group_key("g1"),
                keys.lb_key("lb3"),
                keys.status_key("lb3"),
            }
            assert_identical_and_complete(w)
            assert "lb3" not in held_rules(w, "n1")

    run(body)


def test_a_node_that_missed_changes_is_brought_up_to_date() -> None:
    async def body() -> None:
        async with counting_world(5) as w:
            w.nodes.unreachable.add(endpoint("n2"))
            for i in (1, 3):
                await w.put_lb(load_balancer(f"lb{i}", vip=f"203.0.113.{10 + i}", n_members=3, generation=2))
                await w.converge()
            assert held_rules(w, "n2")["lb1"][0].backends[-1].id == "lb1-m1"  # behind
            w.nodes.bodies.clear()
            w.nodes.unreachable.discard(endpoint("n2"))
            await w.pushed()
            await w.converge()
            # It answered its last push, so the operator knows its base: a
            # delta with both changes it missed.
            sent = [s for e, s, _ in w.nodes.bodies if e == endpoint("n2")]
            assert sent and sent[-1].is_delta and set(sent[-1].changes) == {"lb1", "lb3"}
            assert_identical_and_complete(w)

    run(body)


def test_a_node_restarted_with_empty_maps_refuses_the_delta_and_gets_the_full_state() -> None:
    async def body() -> None:
        async with counting_world(5) as w:
            w.nodes.restart("n3")  # before the operator hears of it: its next delta has the wrong base
            w.nodes.bodies.clear()
            await w.put_lb(load_balancer("lb2", vip="203.0.113.12", n_members=4, generation=2))
            await w.converge()
            sent = [s for e, s, _ in w.nodes.bodies if e == endpoint("n3")]
            assert w.nodes.refused == 1
            assert [s.is_delta for s in sent] == [True, False]  # refused, then the full state
            assert {s.id for s in sent[-1].services} == {f"lb{i}/l1" for i in range(5)}
            others = [s for e, s, _ in w.nodes.bodies if e != endpoint("n3")]
            assert all(s.is_delta and list(s.changes) == ["lb2"] for s in others)
            assert_identical_and_complete(w)

    run(body)


def test_a_node_of_another_epoch_is_resynced_fully() -> None:
    async def body() -> None:
        async with counting_world(4) as w:
            ep = endpoint("n1")
            held = w.nodes.held[ep]
            # Same generation, another stream (say a group of this name from
            # a store since rebuilt): not comparable, so not taken as current.
            w.nodes.held[ep] = held.model_copy(update={"epoch": "g1:another"})
            w.nodes.rules[ep] = {}
            w.nodes.bodies.clear()
            await w.op._poll_nodes()
            await w.pushed()
            sent = [s for e, s, _ in w.nodes.bodies if e == ep]
            assert len(sent) == 1 and not sent[0].is_delta and len(sent[0].services) == 4
            assert sent[0].epoch == w.nodes.held[endpoint("n2")].epoch
            assert_identical_and_complete(w)

    run(body)


def test_an_operator_restart_sends_nothing_to_nodes_already_current() -> None:
    async def body() -> None:
        async with counting_world(6) as w:
            store = w.store
            assert isinstance(store, CountingStore)
            op2 = Operator(store, "token", Settings(group_size=3, retry=0.01), agents=w.nodes)  # type: ignore[arg-type]
            await w.op.stop()
            w.op = op2
            for inf in op2._informers():
                inf.start()
            for inf in op2._informers():
                assert await inf.wait_synced(5)
            w.nodes.bodies.clear()
            store.writes.clear()
            await op2._poll_nodes()
            await w.converge()
            assert w.nodes.bodies == []  # every node reported the group's generation
            assert store.writes == []  # and every status was already right
            # Its next change is a delta: the poll told it what each node holds.
            await w.put_lb(load_balancer("lb4", vip="203.0.113.14", n_members=3, generation=2))
            await w.converge()
            assert [list(s.changes) for _, s, _ in w.nodes.bodies] == [["lb4"]] * 3
            assert_identical_and_complete(w)

    run(body)


def test_a_burst_of_creates_is_coalesced_into_few_generations() -> None:
    """Creates arriving together are placed in few passes and reach each
    node in few pushes (a pass places every load balancer that changed
    since the last; a node's worker sends the latest target when it is
    free), and each status is written once it is true, not per pass."""

    async def body() -> None:
        async with counting_world(0) as w:
            store = w.store
            assert isinstance(store, CountingStore)
            w.op._tasks.append(asyncio.create_task(w.op._loop()))
            w.nodes.bodies.clear()
            store.writes.clear()
            n = 200
            lbs = [load_balancer(f"b{i:03d}", vip=f"198.51.{i // 250}.{i % 250 + 1}") for i in range(n)]
            for lb in lbs:
                await w.store.put(keys.lb_key(lb.id), dump(lb), expect=0)
            await until(
                lambda: all(len(w.nodes.rules.get(endpoint(x), {})) == n for x in ("n1", "n2", "n3")),
                20,
                "the burst did not reach every node",
            )
            await until(lambda: sum(k.startswith(keys.STATUS_PREFIX) for k in store.writes) >= n, 20, "statuses")
            for node in ("n1", "n2", "n3"):
                pushes = [s for e, s, _ in w.nodes.bodies if e == endpoint(node)]
                assert len(pushes) <= n // 10, (node, len(pushes))
            rules = [k for k in store.writes if k.startswith(keys.RULES_PREFIX)]
            assert len(rules) == n  # each load balancer compiled and placed once
            statuses = [k for k in store.writes if k.startswith(keys.STATUS_PREFIX)]
            assert len(statuses) == len(set(statuses)) == n  # each status written once
            assert_identical_and_complete(w)

    run(body)


def test_creates_trickling_in_during_passes_get_one_true_status_each() -> None:
    """Creates arriving one by one while passes run and pushes take time
    (as 8 clients' creates do): a load balancer that came while a pass
    ran is not judged before the placement pass has looked at it (it would
    read as "no group can take it", an ERROR the API shows at once), and
    each is written once: ACTIVE, once every node holds it. Pushes, rules
    and statuses each go many creates at a time."""

    async def body() -> None:
        async with counting_world(0) as w:
            store = w.store
            assert isinstance(store, CountingStore)
            written: list[tuple[LoadBalancerStatus, bool]] = []
            put_many = store.put_many

            async def recording_put_many(puts: Sequence[Put]) -> list[int | Conflict]:
                for p in puts:
                    if p.key.startswith(keys.STATUS_PREFIX):
                        st = LoadBalancerStatus.model_validate_json(p.value)
                        everywhere = all(st.id in w.nodes.rules.get(endpoint(x), {}) for x in ("n1", "n2", "n3"))
                        written.append((st, everywhere))
                return await put_many(puts)

            store.put_many = recording_put_many  # type: ignore[method-assign]
            push = w.nodes.push

            async def slow_push(e: str, s: DesiredState) -> tuple[AgentState, int]:
                await asyncio.sleep(0.01)
                return await push(e, s)

            w.nodes.push = slow_push  # type: ignore[method-assign]
            w.op._tasks.append(asyncio.create_task(w.op._loop()))
            n = 120
            for i in range(n):
                lb = load_balancer(f"t{i:03d}", vip=f"198.51.{i // 250}.{i % 250 + 1}")
                await store.put(keys.lb_key(lb.id), dump(lb), expect=0)
                await asyncio.sleep(0.001)
            await until(lambda: len({s.id for s, _ in written}) == n, 20, "every load balancer's status")
            await until(lambda: not w.op._dirty_lbs, 5, "the statuses to settle")
            assert [s.error for s, _ in written if s.provisioning_status != "ACTIVE"] == []
            assert all(s.observed_generation == 1 and everywhere for s, everywhere in written)
            assert len(written) == n  # once each
            # Few pushes to each node, each carrying many creates; the
            # statuses written many to a store request.
            for node in ("n1", "n2", "n3"):
                assert len([e for e, _, _ in w.nodes.bodies if e == endpoint(node)]) <= n // 10, node
            status_requests = [b for b in store.batches if b[0].startswith(keys.STATUS_PREFIX)]
            assert sum(map(len, status_requests)) == n and len(status_requests) <= n // 10
            # Their rules too: placed several to a pass (place_interval).
            rules_requests = [b for b in store.batches if b[0].startswith(keys.RULES_PREFIX)]
            assert sum(map(len, rules_requests)) == n and len(rules_requests) <= n // 4
            assert_identical_and_complete(w)

    run(body)


def test_pushes_are_paced_only_in_a_burst_and_its_last_changes_are_not_held_back() -> None:
    """With a push interval no test would wait for: a change alone right
    after a push still goes at once, a burst goes in few pushes, and its
    last changes go once no more come, not at the interval's end."""

    async def body() -> None:
        async with counting_world(2, push_interval=3600.0) as w:
            push = w.nodes.push

            async def slow_push(e: str, s: DesiredState) -> tuple[AgentState, int]:
                await asyncio.sleep(0.01)  # as a node's apply takes time, changes pile up meanwhile
                return await push(e, s)

            w.nodes.push = slow_push  # type: ignore[method-assign]
            w.op._tasks.append(asyncio.create_task(w.op._loop()))
            for step in range(3):  # one change at a time, each right after the last push
                w.nodes.bodies.clear()
                await w.put_lb(load_balancer("lb0", vip="203.0.113.10", n_members=3 + step, generation=2 + step))
                await until(
                    lambda k=3 + step: all(len(held_rules(w, x)["lb0"][0].backends) == k for x in ("n1", "n2", "n3")),
                    5,
                    "a change alone was held back",
                )
                assert len(w.nodes.bodies) == 3
            w.nodes.bodies.clear()
            n = 40
            for i in range(n):
                lb = load_balancer(f"q{i:02d}", vip=f"198.51.100.{i + 1}")
                await w.store.put(keys.lb_key(lb.id), dump(lb), expect=0)
                await asyncio.sleep(0.001)
            await until(
                lambda: all(len(held_rules(w, x)) == n + 2 for x in ("n1", "n2", "n3")),
                5,
                "the burst's last creates were held back",
            )
            assert len(w.nodes.bodies) <= 3 * 3  # the first create alone, then what piled up, then the rest

    run(body)


class Unlistable(dict):  # type: ignore[type-arg]
    """A group's rules that must not be walked as a whole."""

    def keys(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the whole group was compared")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the whole group was compared")


def test_a_delta_between_versions_looks_only_at_what_changed() -> None:
    from xdsr.operator.view import Target, Version

    def rules(lb_id: str) -> PlacedLoadBalancer:
        return PlacedLoadBalancer(generation=1, project_id="p", services=[])

    placed = {f"lb{i}": (rules(f"lb{i}"), 10 + i) for i in range(1000)}
    v1 = Version(frozenset(placed), None)
    base = Target("g1:u", 1009, placed, v1)
    # Three versions later: lb5 changed, lb7 went, lb2000 came.
    p2 = dict(placed) | {"lb5": (rules("lb5"), 2001)}
    v2 = Version(frozenset({"lb5"}), v1)
    p3 = {k: v for k, v in p2.items() if k != "lb7"}
    v3 = Version(frozenset({"lb7"}), v2)
    p4_plain = p3 | {"lb2000": (rules("lb2000"), 2003)}
    p4 = Unlistable(p4_plain)
    v4 = Version(frozenset({"lb2000"}), v3)
    target = Target("g1:u", 2003, p4, v4)
    state, changed = target.delta(1009, base.revisions())
    assert changed == {"lb5", "lb7", "lb2000"}
    assert state.changes["lb7"] == [] and state.base == 1009
    # A base older than the versions kept: compared one by one, same answer.
    v = v4
    for _ in range(Version.DEPTH + 1):
        v = Version(frozenset(), v)
    far = Target("g1:u", 2003, p4_plain, v)
    assert v.since(v1) is None
    assert far.delta(1009, base.revisions())[1] == {"lb5", "lb7", "lb2000"}


def test_a_poll_answered_across_a_push_does_not_undo_what_the_push_told() -> None:
    """A node may read its state for a poll, then apply a push, and the
    poll's answer arrive last: that older state must not make the operator
    forget what the node holds (it would send it the full state)."""

    async def body() -> None:
        async with counting_world(5) as w:
            ep = endpoint("n1")
            gate = asyncio.Event()
            read = asyncio.Event()
            plain = w.nodes.get_state

            async def slow(e: str, since: tuple[str, int] | None = None) -> AgentState:
                got = await plain(e, since)  # read now, answered later
                if e == ep:
                    read.set()
                    await gate.wait()
                return got

            w.nodes.get_state = slow  # type: ignore[method-assign]
            poll = asyncio.create_task(w.op._poll_nodes())
            await read.wait()
            await w.put_lb(load_balancer("lb2", vip="203.0.113.12", n_members=4, generation=2))
            await w.op.reconcile()
            await w.pushed()
            w.nodes.bodies.clear()
            gate.set()
            await poll
            w.nodes.get_state = plain  # type: ignore[method-assign]
            await w.put_lb(load_balancer("lb3", vip="203.0.113.13", n_members=4, generation=2))
            await w.converge()
            sent = [s for e, s, _ in w.nodes.bodies if e == ep]
            assert sent and all(s.is_delta and list(s.changes) == ["lb3"] for s in sent), sent
            assert_identical_and_complete(w)

    run(body)


def test_a_poll_reads_only_what_changed_and_a_restarted_node_whole() -> None:
    """After one change, a poll of each node asks for what changed since its
    last answer and gets that load balancer's reports only; merged, the
    operator's reports equal a whole read. A restarted agent answers whole
    (the operator never mixes its reports with the earlier agent's); every
    settings.full_read, a poll reads everything (the counters)."""

    def whole(w: World, node: str) -> dict[str, list[ServiceReport]]:
        out: dict[str, list[ServiceReport]] = {}
        for r in w.nodes.held[endpoint(node)].services:
            out.setdefault(owner(r.id), []).append(r)
        return out

    async def body() -> None:
        async with counting_world(8) as w:
            await w.op._poll_nodes()
            w.nodes.polls.clear()
            await w.put_lb(load_balancer("lb2", vip="203.0.113.12", n_members=4, generation=2))
            await w.converge()
            await w.op._poll_nodes()
            assert len(w.nodes.polls) == 3
            for ep, since, got in w.nodes.polls:
                assert since is not None and got.partial and got.changed == ["lb2"], (ep, since, got.changed)
                assert {owner(r.id) for r in got.services} == {"lb2"}
            for name in ("n1", "n2", "n3"):
                assert w.op.nodes[name].by_lb == whole(w, name), name
                assert [r.active_backends for r in w.op.nodes[name].by_lb["lb2"]] == [4]

            w.nodes.polls.clear()
            w.nodes.restart("n1")
            await w.op._poll_nodes()
            answers = {ep: (since, got) for ep, since, got in w.nodes.polls}
            since, got = answers[endpoint("n1")]
            assert since is not None and not got.partial, "another instance: a whole answer"
            assert got.instance != since[0] and got.services == []
            await w.converge()
            assert_identical_and_complete(w)
            assert w.op.nodes["n1"].by_lb == whole(w, "n1")

            w.nodes.polls.clear()
            w.op.settings.full_read = 0.0
            await w.op._poll_nodes()
            assert [since for _, since, _ in w.nodes.polls] == [None] * 3, "the counters are due: whole reads"

    run(body)


def test_a_quiet_group_polls_nothing_and_counters_arrive_within_one_poll() -> None:
    """A poll of a node where nothing changed carries no report and no
    counter (its size does not grow with the group). A node that forwards
    for a load balancer sends that service's counters, and only them, in
    the next poll, and the load balancer's status counts them then: as fresh
    as when every poll read everything."""

    async def body() -> None:
        async with counting_world(8) as w:
            w.op.settings.stats_interval = 0.0  # a status is rewritten for its counters at once
            await w.op._poll_nodes()
            w.nodes.polls.clear()
            items = REGISTRY.get_sample_value("xdsr_operator_poll_items_total", {"node": "n1"})
            since_polls = REGISTRY.get_sample_value("xdsr_operator_polls_total", {"node": "n1", "answer": "since"}) or 0
            await w.op._poll_nodes()
            assert len(w.nodes.polls) == 3
            for ep, since, got in w.nodes.polls:
                assert since is not None and got.partial, ep
                assert got.changed == [] and got.services == [] and got.counters == {}, ep
            # The metrics show it: one more poll answered since, carrying nothing.
            assert REGISTRY.get_sample_value("xdsr_operator_poll_items_total", {"node": "n1"}) == items
            assert REGISTRY.get_sample_value("xdsr_operator_polls_total", {"node": "n1", "answer": "since"}) == (
                since_polls + 1
            )

            w.nodes.traffic("n2", "lb5/l1", 120, 9000)
            w.nodes.traffic("n3", "lb5/l1", 30, 2000)
            w.nodes.polls.clear()
            await w.op._poll_nodes()
            answers = {ep: got for ep, _, got in w.nodes.polls}
            assert answers[endpoint("n1")].counters == {}
            assert answers[endpoint("n2")].counters == {"lb5/l1": (120, 9000)}
            assert answers[endpoint("n2")].services == [], "counters only: not the whole report"
            assert [(r.packets, r.bytes) for r in w.op.nodes["n2"].by_lb["lb5"]] == [(120, 9000)]
            await w.converge()
            status = w.op.statuses.get("lb5")
            assert status is not None and status.stats["l1"].packets == 150 and status.stats["l1"].bytes == 11000

            # The next poll carries them no more; new traffic, again.
            w.nodes.polls.clear()
            await w.op._poll_nodes()
            assert all(got.counters == {} for _, _, got in w.nodes.polls)
            w.nodes.traffic("n2", "lb5/l1", 121, 9100)
            await w.op._poll_nodes()
            await w.converge()
            status = w.op.statuses.get("lb5")
            assert status is not None and status.stats["l1"].packets == 151
            for name in ("n1", "n2", "n3"):
                merged = w.op.nodes[name].by_lb
                assert merged == _by_owner(w.nodes.held[endpoint(name)].services), "as a whole read"

    run(body)


def test_counters_held_back_by_the_stats_interval_are_written_once_it_has_passed() -> None:
    """A status is rewritten for its counters at most every stats_interval.
    Counters that moved within it are written once it has passed, by a pass
    the operator schedules itself: no later poll brings them again (a poll
    carries only the counters that moved since the last one)."""

    async def body() -> None:
        async with counting_world(8) as w:
            w.op.settings.stats_interval = 0.0
            w.nodes.traffic("n2", "lb5/l1", 120, 9000)
            await w.op._poll_nodes()
            await w.converge()
            first = w.op.statuses.get("lb5")
            assert first is not None and first.stats["l1"].packets == 120

            w.op.settings.stats_interval = 3.0
            w.nodes.traffic("n2", "lb5/l1", 130, 9900)
            await w.op._poll_nodes()
            w.op._kick.clear()
            await w.converge()
            held = w.op.statuses.get("lb5")
            assert held is not None and held.stats["l1"].packets == 120, "written less than stats_interval ago"

            w.nodes.polls.clear()
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                # Only the operator's own wake-up: no poll in between.
                await asyncio.wait_for(w.op._kick.wait(), timeout=deadline - asyncio.get_running_loop().time())
                w.op._kick.clear()
                await w.converge()
                status = w.op.statuses.get("lb5")
                if status is not None and status.stats["l1"].packets == 130:
                    break
            assert w.nodes.polls == [], "no poll brought the counters again"

    run(body)


def _by_owner(reports: list[ServiceReport]) -> dict[str, list[ServiceReport]]:
    out: dict[str, list[ServiceReport]] = {}
    for r in reports:
        out.setdefault(owner(r.id), []).append(r)
    return out
