"""The Agent's state machine against a fake kernel and a fake network: what
is applied when, what a failed apply leaves, and the re-apply when a MAC
appears. No root needed (the end-to-end tests cover the real thing)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Collection
from typing import Any

import pytest

from xdsr.agent import core, drift, rules
from xdsr.agent.core import Agent, AgentConfig
from xdsr.agent.resolver import NeighborKey
from xdsr.dataplane.loader import DataplaneError
from xdsr.dataplane.model import Service, ServiceKey
from xdsr.dataplane.state import ApplyReport, CounterValue, InstalledService, Stats
from xdsr.model.agent import DesiredState

MEMBER_IP = ipaddress.ip_address("10.1.0.12")
KEY = (100, MEMBER_IP)


class FakeKernel:
    """apply/installed/read_stats of xdsr.dataplane.state, in memory."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.applies: list[list[Service]] = []
        self.fail: Exception | None = None
        self.max_services = 64
        self.deltas: list[tuple[list[Service], list[ServiceKey]]] = []  # what each apply_changes was given
        self.traffic: dict[ServiceKey, CounterValue] = {}  # counters other than the default's

    def apply(self, dp: Any, services: list[Service]) -> ApplyReport:
        if self.fail is not None:
            raise self.fail
        self.applies.append(services)
        self.services = services
        held = {s.key: InstalledService(s, i, s.digest(), 100 + i, 4096) for i, s in enumerate(services)}
        return ApplyReport(created=[s.key for s in services], seconds=0.001, installed=held)

    def apply_changes(self, dp: Any, upsert: list[Service], remove: list[ServiceKey]) -> ApplyReport:
        if self.fail is not None:
            raise self.fail
        self.deltas.append((list(upsert), list(remove)))
        gone = set(remove) | {s.key for s in upsert}
        return self.apply(dp, [s for s in self.services if s.key not in gone] + list(upsert))

    def installed(self, dp: Any) -> list[InstalledService]:
        return [InstalledService(s, i, s.digest(), 100 + i, 4096) for i, s in enumerate(self.services)]

    def read_stats(self, dp: Any, services: list[InstalledService]) -> Stats:
        return Stats({}, {s.service.key: self.traffic.get(s.service.key, CounterValue(10, 1000)) for s in services})

    def digest(self, dp: Any) -> bytes:
        return repr([(s.key, s.digest()) for s in self.services]).encode()

    def close(self) -> None:
        pass


class FakeResolver:
    def __init__(self) -> None:
        self.macs: dict[NeighborKey, str] = {}
        self.asked: list[set[NeighborKey]] = []
        self.probes_sent = {"ipv4": 0, "ipv6": 0}

    async def resolve(self, keys: Collection[NeighborKey], timeout: float = 0.5) -> dict[NeighborKey, str]:
        self.asked.append(set(keys))
        return {k: self.macs[k] for k in keys if k in self.macs}

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel()
    monkeypatch.setattr(core, "apply", k.apply)
    monkeypatch.setattr(core, "apply_changes", k.apply_changes)
    monkeypatch.setattr(core, "installed", k.installed)
    monkeypatch.setattr(core, "read_stats", k.read_stats)
    monkeypatch.setattr(drift, "index_digest", k.digest)
    monkeypatch.setattr(drift, "installed", k.installed)
    return k


def desired(generation: int, *, with_member: bool = True) -> DesiredState:
    backends: list[dict[str, Any]] = [{"id": "m1", "mac": "02:00:00:00:00:01", "vlan": 100}]
    if with_member:
        backends.append({"id": "m2", "address": str(MEMBER_IP), "vlan": 100})
    svc = {"id": "lb/l", "vip": "203.0.113.10", "port": 80, "protocol": "tcp", "segment": {"id": 10}}
    return DesiredState.model_validate({"generation": generation, "services": [{**svc, "backends": backends}]})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_agent(kernel: FakeKernel, resolver: FakeResolver) -> Agent:
    return Agent(AgentConfig(name="n", iface="trunk"), kernel, resolver)  # type: ignore[arg-type]


def test_generations_and_a_failed_apply(kernel: FakeKernel) -> None:
    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        status, st = await a.put(desired(2))
        assert status == 200 and st.generation == 2 and len(kernel.applies) == 1
        assert (await a.put(desired(2)))[0] == 200 and len(kernel.applies) == 1  # no-op
        status, st = await a.put(desired(1))
        assert status == 409 and st.generation == 2 and len(kernel.applies) == 1

        kernel.fail = DataplaneError("no memory for the table")
        status, st = await a.put(desired(3, with_member=False))
        assert status == 500 and st.generation == 2 and "no memory" in (st.error or "")
        assert a.desired == desired(2)  # the failed state is not taken for applied
        kernel.fail = None
        status, st = await a.put(desired(3, with_member=False))  # the retry goes through
        assert status == 200 and st.generation == 3 and st.error is None
        await a.stop()

    run(body())


def test_unresolved_member_is_left_out_then_added_without_a_put(kernel: FakeKernel) -> None:
    async def body() -> None:
        resolver = FakeResolver()
        a = make_agent(kernel, resolver)
        status, st = await a.put(desired(1))
        assert status == 200
        assert resolver.asked == [{KEY}]
        assert st.services[0].unresolved == ["m2"] and st.services[0].active_backends == 1
        assert [b.id for b in kernel.services[0].backends] == ["m1"]

        # Another PUT does not wait for an address already being retried.
        await a.put(desired(2))
        assert resolver.asked == [{KEY}]

        # The member comes up; the next round finds it and re-applies.
        resolver.macs[KEY] = "02:00:00:00:00:02"
        a.neighbors.entries[KEY].next_probe = 0
        await a._resolve_round()
        assert [(b.id, b.mac) for b in kernel.services[0].backends] == [
            ("m1", "02:00:00:00:00:01"),
            ("m2", "02:00:00:00:00:02"),
        ]
        st = await a.state()
        assert st.generation == 2 and st.services[0].unresolved == [] and st.services[0].packets == 10
        applies = len(kernel.applies)
        # Confirmed unchanged: nothing to apply.
        a.neighbors.entries[KEY].next_probe = 0
        await a._resolve_round()
        assert len(kernel.applies) == applies
        await a.stop()

    run(body())


def test_a_failed_reapply_is_retried(kernel: FakeKernel) -> None:
    async def body() -> None:
        resolver = FakeResolver()
        a = make_agent(kernel, resolver)
        await a.put(desired(1))
        resolver.macs[KEY] = "02:00:00:00:00:02"
        a.neighbors.entries[KEY].next_probe = 0
        kernel.fail = DataplaneError("boom")
        with pytest.raises(DataplaneError):
            await a._resolve_round()
        kernel.fail = None
        await a._resolve_round()  # nothing is due, but the re-apply is still pending
        assert len(kernel.services[0].backends) == 2
        await a.stop()

    run(body())


def test_a_resync_repairs_drift(kernel: FakeKernel) -> None:
    """Someone else changed the tables: the operator's re-sent state (same
    generation) finds the kernel's index changed, re-applies and counts it."""

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        assert (await a.put(desired(2, with_member=False)))[0] == 200
        intended = kernel.services
        assert (await a.put(desired(2, with_member=False)))[0] == 200 and len(kernel.applies) == 1  # no drift
        kernel.services = []  # e.g. `xdsr dp apply` of an empty file behind the agent's back
        status, st = await a.put(desired(2, with_member=False))
        assert status == 200 and st.error is None
        assert len(kernel.applies) == 2 and kernel.services == intended
        assert a.drift.repairs == 1


def two_lbs(generation: int, *, members: int = 1, epoch: str = "g1:u") -> DesiredState:
    def svc(lb: str, vip: str, n: int) -> dict[str, Any]:
        backends = [{"id": f"{lb}-m{i}", "mac": f"02:00:00:00:01:{i:02x}", "vlan": 100} for i in range(n)]
        return {"id": f"{lb}/l", "vip": vip, "port": 80, "protocol": "tcp", "backends": backends}

    return DesiredState.model_validate(
        {
            "generation": generation,
            "epoch": epoch,
            "services": [svc("a", "203.0.113.1", members), svc("b", "203.0.113.2", 1)],
        }
    )


def delta(generation: int, base: int, changes: dict[str, Any], epoch: str = "g1:u") -> DesiredState:
    return DesiredState.model_validate({"generation": generation, "base": base, "epoch": epoch, "changes": changes})


def test_a_delta_changes_only_its_load_balancers_and_needs_its_base(kernel: FakeKernel) -> None:
    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        assert (await a.put(two_lbs(5)))[0] == 200
        b_service = next(s for s in kernel.services if s.backends[0].id == "b-m0")

        changed = two_lbs(6, members=3).services[0].model_dump()
        status, st = await a.put(delta(6, 5, {"a": [changed]}))
        assert status == 200 and st.generation == 6 and st.partial
        assert [r.id for r in st.services] == ["a/l"] and st.services[0].active_backends == 3
        assert len(kernel.services) == 2 and b_service in kernel.services  # b kept as built, not rebuilt
        (upsert, remove) = kernel.deltas[-1]
        assert [s.backends[0].id for s in upsert] == ["a-m0"] and remove == [], "the kernel is given a's service only"
        assert a.desired is not None and {s.id for s in a.desired.services} == {"a/l", "b/l"}

        # Not at its base (missed generation 7), or of another epoch: refused, nothing applied.
        applies = len(kernel.applies)
        for bad in (delta(8, 7, {"b": []}), delta(7, 6, {"b": []}, epoch="g1:other")):
            status, st = await a.put(bad)
            assert status == 409 and st.generation == 6 and st.epoch == "g1:u" and st.services == []
        assert len(kernel.applies) == applies

        # A service under another load balancer's id, or on a key b serves: nothing applied.
        wrong = two_lbs(1).services[1].model_dump()
        with pytest.raises(rules.InvalidState, match=r"changes\.a\[0\]\.id"):
            await a.put(delta(7, 6, {"a": [wrong]}))
        clash = {**changed, "vip": "203.0.113.2"}
        with pytest.raises(rules.InvalidState, match="already served by 'b/l'"):
            await a.put(delta(7, 6, {"a": [clash]}))
        assert len(kernel.applies) == applies

        status, st = await a.put(delta(7, 6, {"b": []}))
        assert status == 200 and st.services == [] and [s.backends[0].id for s in kernel.services] == ["a-m0"]
        # A full state of another epoch is taken whatever its generation.
        status, st = await a.put(two_lbs(2, epoch="g1:new"))
        assert status == 200 and st.generation == 2 and len(st.services) == 2 and not st.partial
        await a.stop()

    run(body())


def many_lbs(generation: int, n: int, epoch: str = "g1:u") -> DesiredState:
    services = [
        {
            "id": f"lb{i}/l",
            "vip": f"203.0.113.{i + 1}",
            "port": 80,
            "protocol": "tcp",
            "backends": [{"id": f"lb{i}-m{j}", "mac": f"02:00:00:00:{i:02x}:{j:02x}", "vlan": 100} for j in range(3)],
        }
        for i in range(n)
    ]
    return DesiredState.model_validate({"generation": generation, "epoch": epoch, "services": services})


def parts_of(state: DesiredState, part_bytes: int) -> list[DesiredState]:
    from xdsr.operator.agents import split

    return [DesiredState.model_validate_json(b) for b in split(state, part_bytes)]


def test_a_full_state_in_parts_is_applied_once_whole(kernel: FakeKernel) -> None:
    """Parts are kept, nothing applied, until the last; then the whole state
    is applied in one apply. A part out of order, or of another generation,
    drops what was received; an older generation is refused."""

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        whole = many_lbs(4, 12)
        parts = parts_of(whole, 1000)
        assert len(parts) >= 4 and all(p.parts == len(parts) for p in parts)
        assert [s for p in parts for s in p.services] == whole.services, "the parts are the state, in order"

        for p in parts[:-1]:
            status, st = await a.put(p)
            assert status == 202 and st.generation == 0
        assert (await a.put(parts[-2]))[0] == 202, "a retry of the last part received is no harm"
        assert (await a.put(parts[1]))[0] == 409, "an earlier part is out of order: the parts are dropped"
        assert (await a.put(parts[-1]))[0] == 409, "so the last one completes nothing"
        assert kernel.applies == []
        for p in parts[:-1]:
            assert (await a.put(p))[0] == 202
        status, st = await a.put(parts[-1])
        assert status == 200 and st.generation == 4 and len(st.services) == 12 and not st.partial
        assert len(kernel.applies) == 1 and len(kernel.services) == 12
        assert a.desired == whole

        # Another state's part between: what was received is dropped, nothing applied.
        later = parts_of(many_lbs(5, 10), 1500)
        assert (await a.put(later[0]))[0] == 202
        assert (await a.put(parts_of(many_lbs(6, 10), 1500)[1]))[0] == 409
        assert (await a.put(later[-1]))[0] == 409
        older = parts_of(many_lbs(3, 10), 1500)
        assert (await a.put(older[0]))[0] == 409
        assert len(kernel.applies) == 1 and a.generation == 4

        # A delta from the generation the parts made works as from any full state.
        status, st = await a.put(delta(5, 4, {"lb0": []}))
        assert status == 200 and len(kernel.services) == 11
        await a.stop()

    run(body())


@contextlib.asynccontextmanager
async def served(agent: Agent, token: str, bodies: list[int] | None = None) -> AsyncIterator[str]:
    """The agent's HTTP API served by uvicorn on 127.0.0.1 (a free port) in
    this loop, for the operator's client to reach over a real connection;
    its URL. bodies: the size of each request body received is appended."""
    import socket

    import uvicorn

    from xdsr.agent.api import create_app

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield

    app = create_app(agent, token.encode(), lifespan)

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or bodies is None:
            return await app(scope, receive, send)
        size = 0

        async def counting() -> Any:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    bodies.append(size)
            return message

        return await app(scope, counting, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(counted, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not server.started:
            assert not task.done() and asyncio.get_running_loop().time() < deadline, "the agent's API did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def test_the_operator_client_sends_a_large_state_in_parts(kernel: FakeKernel) -> None:
    """AgentClient.push against the agent's HTTP API: a state larger than
    one part arrives in several bodies and is applied once; one that fits
    is sent in one body."""
    from xdsr.operator.agents import AgentClient

    token = "t" * 20

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        bodies: list[int] = []
        client = AgentClient(token)
        async with served(a, token, bodies) as url:
            client.part_bytes = 2000
            got, sent = await client.push(url, many_lbs(7, 20))
            assert got.generation == 7 and len(got.services) == 20
            assert len(bodies) > 2 and max(bodies) <= 2000 and sent == sum(bodies)
            assert len(kernel.applies) == 1

            bodies.clear()
            got, _ = await client.push(url, delta(8, 7, {"lb1": []}))
            assert got.generation == 8 and len(bodies) == 1
            await client.close()
        await a.stop()

    run(body())


def test_the_operator_client_sends_a_state_over_a_mebibyte_whole(kernel: FakeKernel) -> None:
    """A body over 1 MiB (a full state in one part) goes out streamed from
    the same bytes: the agent receives it whole, with its length, and
    applies it; a delta after it goes out as before."""
    import warnings

    from xdsr.operator.agents import STREAMED_FROM, AgentClient, split

    token = "t" * 20
    services = [
        {
            "id": f"lb{i}/l",
            "vip": f"203.0.113.{i % 250 + 1}",
            "port": 80 + i // 250,
            "protocol": "tcp",
            "backends": [
                {"id": f"lb{i}-m{j}", "mac": f"02:00:00:{i >> 8:02x}:{i & 255:02x}:{j:02x}", "vlan": 100}
                for j in range(50)
            ],
        }
        for i in range(400)
    ]
    state = DesiredState.model_validate({"generation": 3, "epoch": "g1:u", "services": services})
    (whole,) = split(state)
    assert len(whole) > STREAMED_FROM

    async def body() -> None:
        kernel.max_services = 400
        a = make_agent(kernel, FakeResolver())
        bodies: list[int] = []
        client = AgentClient(token)
        try:
            async with served(a, token, bodies) as url:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", ResourceWarning)
                    got, sent = await client.push(url, state)
                assert got.generation == 3 and len(got.services) == 400
                assert bodies == [len(whole)] and sent == len(whole)
                assert len(kernel.applies) == 1 and a.desired == state
                got, _ = await client.push(url, delta(4, 3, {"lb1": []}))
                assert got.generation == 4 and len(bodies) == 2
        finally:
            await client.close()
            await a.stop()

    run(body())


def test_a_poll_since_its_last_answer_gets_only_what_changed(kernel: FakeKernel) -> None:
    """GET /v1/state?since=: the load balancers whose reports changed after
    the poller's last answer (held or gone), and only their reports; a
    restarted agent (another instance), or one whose every report changed
    since, answers whole, so that a poller never mixes two agents' reports."""
    from xdsr.operator.agents import AgentClient

    token = "t" * 20

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        async with served(a, token) as ep:
            await talk(a, AgentClient(token), ep)

    async def talk(a: Agent, client: AgentClient, ep: str) -> None:
        await client.push(ep, many_lbs(1, 6))
        first = await client.get_state(ep)
        assert not first.partial and len(first.services) == 6 and first.instance == a.reports.instance
        at = (first.instance, first.seq)

        quiet = await client.get_state(ep, at)
        assert quiet.partial and quiet.changed == [] and quiet.services == []

        # One load balancer changed, another removed: those two only.
        changed = many_lbs(1, 6).services[2].model_dump()
        changed["backends"] = changed["backends"][:1]
        await client.push(ep, delta(2, 1, {"lb2": [changed], "lb4": []}))
        got = await client.get_state(ep, at)
        assert got.partial and got.changed == ["lb2", "lb4"] and got.generation == 2
        assert [(r.id, r.active_backends) for r in got.services] == [("lb2/l", 1)]
        at2 = (got.instance, got.seq)
        assert (await client.get_state(ep, at2)).services == []
        assert (await client.get_state(ep, at)).changed == ["lb2", "lb4"], "an older since still gets both"

        # A backend going down changes the reports of the load balancers checking it, only.
        target = object()
        a.health_targets = {"lb1/l": {"lb1-m0": target}, "lb3/l": {"lb3-m0": None}}  # type: ignore[dict-item]
        a._health_changed(target)  # type: ignore[arg-type]
        health = await client.get_state(ep, at2)
        assert health.changed == ["lb1"]
        at2 = (health.instance, health.seq)

        # A full state: the load balancers whose reports read otherwise now (lb2 back, lb4 new, lb5 gone).
        await client.push(ep, many_lbs(3, 5))
        got = await client.get_state(ep, at2)
        assert got.partial and got.changed == ["lb2", "lb4", "lb5"]
        assert sorted(r.id for r in got.services) == ["lb2/l", "lb4/l"]
        at3 = (got.instance, got.seq)

        # A failed apply (the kernel may hold anything of it): the answer is whole.
        kernel.fail = DataplaneError("no room")
        status, _ = await a.put(delta(4, 3, {"lb0": []}))
        assert status == 500
        kernel.fail = None
        whole = await client.get_state(ep, at3)
        assert not whole.partial and len(whole.services) == 5 and whole.changed is None

        # A since from the future, or from another instance: whole.
        assert not (await client.get_state(ep, (whole.instance, whole.seq + 5))).partial
        restarted = make_agent(kernel, FakeResolver())
        assert restarted.reports.instance != a.reports.instance
        assert not (await restarted.state(since=(a.reports.instance, whole.seq))).partial
        assert (await restarted.state(since=(restarted.reports.instance, restarted.reports.seq))).partial
        await client.close()
        await a.stop()
        await restarted.stop()

    run(body())


def test_the_held_vips_are_those_of_every_built_and_installed_service(kernel: FakeKernel) -> None:
    """What BGP announces is counted on each apply from what it changed
    (agent/vips.py): across random full states, deltas and failed applies it
    equals what reading every service gives."""
    import random
    from collections import Counter

    rng = random.Random(7)
    vips = ["203.0.113.1", "203.0.113.2", "2001:db8::1"]

    def lb(i: int) -> list[dict[str, Any]]:
        # Load balancers share VIPs (other ports, sometimes other segments): counts above one.
        return [
            {
                "id": f"lb{i}/l{j}",
                "vip": rng.choice(vips),
                "port": 1000 + 10 * i + j,
                "protocol": "tcp",
                "segment": {"id": rng.choice([10, 20])},
                "backends": [{"id": f"lb{i}-m0", "mac": "02:00:00:00:01:01", "vlan": 100}],
            }
            for j in range(rng.randint(1, 2))
        ]

    def full_computation(a: Agent) -> Counter[Any]:  # what bgp.wanted read before: every service
        installed = {s.service.key for s in a.installed_cache}
        return Counter((b.service.key.vip, b.service.key.seg_id) for b in a.built if b.service.key in installed)

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        shared = failed = 0
        for step in range(120):
            generation = step + 1
            kernel.fail = DataplaneError("no room") if rng.random() < 0.1 else None
            if step % 17 == 0:
                ss = [s for i in rng.sample(range(12), rng.randint(0, 8)) for s in lb(i)]
                state = DesiredState.model_validate({"generation": generation, "epoch": "e", "services": ss})
            else:
                changes = {f"lb{i}": lb(i) if rng.random() < 0.7 else [] for i in rng.sample(range(12), 3)}
                state = delta(generation, a.generation, changes, epoch="e")
            status, _ = await a.put(state)
            failed += status == 500
            shared += any(c > 1 for c in a.vips.counts.values())
            assert a.vips.counts == full_computation(a), f"step {step}"
        assert failed and shared, "the walk went through failed applies and shared VIPs"
        await a.stop()

    run(body())


def test_a_poll_since_gets_the_counters_that_moved_only(kernel: FakeKernel) -> None:
    """Counters are as fresh in a partial answer as in a whole one: every
    poll reads them all, and a `since` answer carries [packets, bytes] of
    each service whose counters moved after it (not its whole report, not
    the quiet ones). What moved is numbered on the agent's one sequence, so
    a poller whose `since` is older than another poller's read still gets it."""

    async def body() -> None:
        a = make_agent(kernel, FakeResolver())
        await a.put(many_lbs(1, 6))
        first = await a.state()
        at = (first.instance, first.seq)
        quiet = await a.state(since=at)
        assert quiet.partial and quiet.changed == [] and quiet.services == [] and quiet.counters == {}
        assert quiet.seq == first.seq, "nothing moved: the sequence stands"

        key = a.built_by["lb3"][0].service.key
        kernel.traffic[key] = CounterValue(25, 3100)
        got = await a.state(since=at)
        assert got.partial and got.changed == [] and got.services == []
        assert got.counters == {"lb3/l": (25, 3100)}
        assert got.seq > at[1]
        at2 = (got.instance, got.seq)
        assert (await a.state(since=at2)).counters == {}, "read, and not moved since"
        assert (await a.state(since=at)).counters == {"lb3/l": (25, 3100)}, "an older since still gets them"

        # Another poller read in between: the first one's since still finds them.
        kernel.traffic[key] = CounterValue(30, 4000)
        other = await a.state()
        assert {r.id: (r.packets, r.bytes) for r in other.services}["lb3/l"] == (30, 4000)
        assert (await a.state(since=at2)).counters == {"lb3/l": (30, 4000)}

        # A load balancer whose reports changed is sent whole (its counters in its report), not twice.
        kernel.traffic[key] = CounterValue(40, 5000)
        changed = many_lbs(1, 6).services[3].model_dump()
        changed["backends"] = changed["backends"][:1]
        await a.put(delta(2, 1, {"lb3": [changed]}))
        got = await a.state(since=at2)
        assert got.changed == ["lb3"] and got.counters == {}
        assert [(r.id, r.packets, r.bytes) for r in got.services] == [("lb3/l", 40, 5000)]
        await a.stop()

    run(body())


def test_a_reapply_after_a_mac_came_is_polled_as_the_load_balancers_it_changed(kernel: FakeKernel) -> None:
    """A MAC resolved after the PUT re-applies every table (a full apply),
    but a poll then names only the load balancers whose reports read
    otherwise (the one whose member was unresolved), not the whole node."""

    async def body() -> None:
        resolver = FakeResolver()
        a = make_agent(kernel, resolver)
        other = many_lbs(1, 4).services
        state = desired(1).model_dump()
        state["services"] += [s.model_dump() for s in other]
        await a.put(DesiredState.model_validate(state))
        first = await a.state()
        assert {r.id: r.unresolved for r in first.services}["lb/l"] == ["m2"]

        resolver.macs[KEY] = "02:00:00:00:00:02"
        a.neighbors.entries[KEY].next_probe = 0
        applies = len(kernel.applies)
        await a._resolve_round()
        assert len(kernel.applies) == applies + 1, "re-applied"
        got = await a.state(since=(first.instance, first.seq))
        assert got.partial and got.changed == ["lb"]
        assert [(r.id, r.unresolved, r.active_backends) for r in got.services] == [("lb/l", [], 2)]
        await a.stop()


class FakeChecker:
    """The HealthChecker calls the agent makes, recorded."""

    def __init__(self) -> None:
        self.on_change: Any = None
        self.updates: list[set[Any]] = []

    def can_check(self, segment: Any, version: int, overlay: Any = None) -> bool:
        return True

    def update(self, targets: set[Any]) -> None:
        self.updates.append(targets)

    def is_down(self, target: Any) -> bool:
        return False

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_an_apply_works_out_only_its_changes_health_checks_and_macs(
    kernel: FakeKernel, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delta of a load balancer without health checks does not walk the
    others' checks nor hand the checker every target again, and an apply
    that resolved no MAC does not rewrite the neighbour cache."""
    from xdsr.agent.neighbors import NeighborTable

    saves: list[int] = []
    real_save = NeighborTable.save

    def save(self: NeighborTable, path: Any, dataplane: str) -> None:
        saves.append(len(self.entries))
        real_save(self, path, dataplane)

    async def body() -> None:
        checker = FakeChecker()
        config = AgentConfig(name="n", iface="trunk", neighbor_file=tmp_path / "n.json")
        a = Agent(config, kernel, FakeResolver(), health=checker)  # type: ignore[arg-type]
        a._dp_identity = "test"
        full = two_lbs(5).model_dump()
        full["services"][0]["health"] = {"type": "tcp"}
        full["services"][0]["backends"][0]["address"] = "10.1.0.5"
        assert (await a.put(DesiredState.model_validate(full)))[0] == 200
        assert len(checker.updates) == 1 and set(a.health_targets) == {"a/l"}
        a_targets = a.health_targets["a/l"]
        assert saves == [0], "the first apply writes the cache for these maps"

        b = two_lbs(6).services[1].model_dump()
        b["backends"] = [*b["backends"], {"id": "b-m1", "mac": "02:00:00:00:02:01", "vlan": 100}]
        assert (await a.put(delta(6, 5, {"b": [b]})))[0] == 200
        assert len(checker.updates) == 1, "no checked service changed: the checker is not told again"
        assert a.health_targets["a/l"] is a_targets
        assert saves == [0], "no MAC changed: the cache is not written again"

        assert (await a.put(delta(7, 6, {"a": []})))[0] == 200
        assert len(checker.updates) == 2 and checker.updates[-1] == set() and a.health_targets == {}
        await a.stop()
        assert len(saves) == 2, "stopping writes the cache"

    monkeypatch.setattr(NeighborTable, "save", save)
    run(body())
