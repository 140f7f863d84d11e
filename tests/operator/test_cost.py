"""What a change costs the operator: the work of a pass follows what changed,
not what the group holds (issue 10). Counted, not timed: load balancers
compiled, backends built, checks run, statuses judged and written, states
made and encoded, documents parsed.

Over the memory store with the in-process agents of test_passes."""

from __future__ import annotations

import asyncio

from tests.operator.test_passes import (
    CountingStore,
    World,
    assert_identical_and_complete,
    counting_world,
    endpoint,
    load_balancer,
    run,
    until,
)
from xdsr.dataplane import abi
from xdsr.model import keys
from xdsr.model.agent import AgentState, DesiredState, RuleService
from xdsr.model.group import PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, Member
from xdsr.operator.agents import AgentClient
from xdsr.operator.capacity import ZERO, add, cost
from xdsr.store.docs import dump
from xdsr.store.informer import Informer
from xdsr.store.memory import MemoryStore

NOW = "2026-11-26T00:00:00Z"


def with_member(lb: LoadBalancer, n: int) -> LoadBalancer:
    """lb with one more member (its n-th), one generation later."""
    pool = lb.pools[0]
    member = Member(
        id=f"{lb.id}-m{n}",
        project_id="p",
        created_at=NOW,
        address=f"10.1.1.{n}",
        mac_address=f"02:00:00:00:01:{n:02x}",
        protocol_port=80,
    )
    pools = [pool.model_copy(update={"members": [*pool.members, member]})]
    return lb.model_copy(update={"pools": pools, "generation": lb.generation + 1})


def status_writes(w: World) -> list[str]:
    assert isinstance(w.store, CountingStore)
    return [k for k in w.store.writes if k.startswith(keys.STATUS_PREFIX)]


def test_a_member_change_compiles_checks_and_judges_only_that_load_balancer() -> None:
    async def body() -> None:
        async with counting_world(30) as w:
            lb = w.op.lbs.get("lb7")
            assert lb is not None
            compiles, built = w.op.compiled.compiles, w.op.compiled.backends_built
            checked, judged = w.op.checked, w.op.judged
            members_checked = w.op.compiled.backends_checked
            parsed = w.op.lbs.parsed
            assert isinstance(w.store, CountingStore)
            w.store.writes.clear()

            await w.put_lb(with_member(lb, 9))
            await w.converge()

            assert w.op.compiled.compiles - compiles == 1  # lb7, nothing else
            assert w.op.compiled.backends_built - built == 1  # its new member; the others are kept
            assert w.op.checked - checked == 1
            assert w.op.compiled.backends_checked - members_checked == 1  # the new member; the others passed before
            assert w.op.lbs.parsed - parsed == 1  # lb7's document, nothing else
            assert w.op.judged - judged >= 1
            judged_lbs = {k for k in status_writes(w)}
            assert judged_lbs == {keys.status_key("lb7")}
            st = await w.status("lb7")
            assert st is not None and st.observed_generation == lb.generation + 1
            assert set(st.members) == {f"lb7-m{i}" for i in (0, 1, 9)}
            assert_identical_and_complete(w)

    run(body)


def test_a_pass_with_nothing_changed_does_no_work() -> None:
    async def body() -> None:
        async with counting_world(30) as w:
            assert isinstance(w.store, CountingStore)
            w.store.writes.clear()
            w.nodes.bodies.clear()
            compiles, checked, judged = w.op.compiled.compiles, w.op.checked, w.op.judged
            for _ in range(3):
                await w.op.reconcile()
                await w.pushed()
            assert (w.op.compiled.compiles, w.op.checked, w.op.judged) == (compiles, checked, judged)
            assert w.store.writes == [] and w.nodes.bodies == []

    run(body)


def test_a_group_load_is_kept_as_its_rules_change() -> None:
    """What placement counts a group as holding (services, slot chunks,
    backend entries) is kept as rules come, change and go, and is what
    counting the whole group gives."""

    async def body() -> None:
        async with counting_world(12) as w:
            for i in (2, 5):
                lb = w.op.lbs.get(f"lb{i}")
                assert lb is not None
                await w.put_lb(with_member(lb, 7))
            gone = w.op.lbs.get("lb3")
            assert gone is not None
            await w.put_lb(gone.model_copy(update={"deleting": True, "generation": gone.generation + 1}))
            await w.put_lb(load_balancer("lb40", vip="203.0.113.140", n_members=5))
            await w.converge()
            await until(lambda: w.op.lbs.get("lb3") is None, 5, "lb3 deleted")
            await w.converge()

            counted = ZERO
            for p, _ in w.op._placed()["g1"].values():
                counted = add(counted, cost(p.services))
            assert w.op._loads()["g1"] == counted
            assert counted[0] == 12  # 12 - lb3 + lb40, one service each

    run(body)


def test_nodes_in_step_are_sent_one_state_made_and_encoded_once() -> None:
    async def body() -> None:
        async with counting_world(5) as w:
            lb = w.op.lbs.get("lb1")
            assert lb is not None
            await w.put_lb(with_member(lb, 9))
            await w.op._place()
            w.op._push_all()
            made = []
            for name in ("n1", "n2", "n3"):
                node = w.op.nodes[name]
                assert node.wanted is not None and node.state is not None and node.acked is not None
                made.append(node.wanted.delta(node.state.generation, node.acked))
            assert made[0][1] == {"lb1"}
            assert made[1][0] is made[0][0] and made[2][0] is made[0][0]
            await w.converge()
            assert_identical_and_complete(w)

    run(body)


def test_the_agent_client_encodes_a_state_sent_to_several_nodes_once() -> None:
    async def body() -> None:
        client = AgentClient("token")
        sent: list[tuple[str, bytes]] = []

        async def put(endpoint: str, body: bytes) -> tuple[int, AgentState]:
            sent.append((endpoint, body))
            return 200, AgentState(name=endpoint, generation=3)

        client._put = put  # type: ignore[method-assign]
        state = DesiredState.model_construct(generation=3, epoch="g1:u", base=2, changes={"lb1": []}, services=[])
        for e in ("a", "b", "c"):
            await client.push(e, state)
        assert [e for e, _ in sent] == ["a", "b", "c"]
        assert sent[0][1] is sent[1][1] is sent[2][1]  # the very same bytes
        assert DesiredState.model_validate_json(sent[0][1]).changes == {"lb1": []}
        other = DesiredState.model_construct(generation=4, epoch="g1:u", base=3, changes={"lb2": []}, services=[])
        await client.push("a", other)
        assert DesiredState.model_validate_json(sent[-1][1]).changes == {"lb2": []}
        await client.close()

    run(body)


def test_a_write_of_ours_the_watch_brings_back_first_is_not_parsed_again() -> None:
    async def body() -> None:
        store = MemoryStore()
        inf: Informer[PlacedLoadBalancer] = Informer(store, keys.RULES_PREFIX, PlacedLoadBalancer)
        inf.start()
        try:
            assert await inf.wait_synced(5)
            ours = PlacedLoadBalancer(generation=1, project_id="p")
            value = dump(ours)
            inf.expect("g1/lb1", value, ours)
            rev = await store.put(keys.rules_key("g1", "lb1"), value)
            await inf.wait_for(rev)  # the watch's copy, before apply_local
            assert inf.get("g1/lb1") is ours and inf.parsed == 0
            # Someone else's write under the same name is parsed, as always.
            theirs = PlacedLoadBalancer(generation=2, project_id="p")
            inf.expect("g1/lb1", value, ours)
            rev = await store.put(keys.rules_key("g1", "lb1"), dump(theirs), expect=rev)
            await inf.wait_for(rev)
            assert inf.get("g1/lb1") == theirs and inf.parsed == 1
            inf.forget("g1/lb1")
        finally:
            await inf.stop()
            await store.close()

    run(body)


def test_a_status_waits_for_the_pushes_carrying_its_change_and_is_written_once() -> None:
    """While the pushes bringing a change are on their way, its status is
    not judged (it would be judged again from their answers); once they
    answer it is written once, ACTIVE at the new generation."""

    async def body() -> None:
        async with counting_world(3) as w:
            w.op.settings.status_wait = 30.0
            gate = asyncio.Event()
            plain = w.nodes.push
            started: list[str] = []

            async def slow(e: str, state: DesiredState) -> tuple[AgentState, int]:
                started.append(e)
                await gate.wait()
                return await plain(e, state)

            w.nodes.push = slow  # type: ignore[method-assign]
            lb = w.op.lbs.get("lb1")
            assert lb is not None
            assert isinstance(w.store, CountingStore)
            await w.put_lb(with_member(lb, 9))
            w.store.writes.clear()
            await w.op.reconcile()
            assert sorted(started) == [endpoint(n) for n in ("n1", "n2", "n3")]
            await w.op.reconcile()
            assert status_writes(w) == []  # on its way: not judged yet
            gate.set()
            await w.converge()
            assert status_writes(w) == [keys.status_key("lb1")]
            st = await w.status("lb1")
            assert st is not None and st.observed_generation == lb.generation + 1
            assert st.provisioning_status == "ACTIVE"

    run(body)


def test_a_status_waits_no_longer_than_status_wait_for_a_push_that_hangs() -> None:
    async def body() -> None:
        async with counting_world(3) as w:
            w.op.settings.status_wait = 0.05
            gate = asyncio.Event()
            plain = w.nodes.push

            async def hangs(e: str, state: DesiredState) -> tuple[AgentState, int]:
                if e == endpoint("n3"):
                    await gate.wait()
                return await plain(e, state)

            w.nodes.push = hangs  # type: ignore[method-assign]
            lb = w.op.lbs.get("lb1")
            assert lb is not None
            assert isinstance(w.store, CountingStore)
            await w.put_lb(with_member(lb, 9))
            w.store.writes.clear()
            await w.op.reconcile()
            await until(lambda: w.op.nodes["n2"].state.generation == w.op.nodes["n2"].wanted.generation, 5, "n2")  # type: ignore[union-attr]
            await asyncio.sleep(0.06)  # past status_wait
            await w.op.reconcile()
            assert status_writes(w) == [keys.status_key("lb1")]
            st = await w.status("lb1")
            # Not every node has it yet: pending, as the nodes say.
            assert st is not None and st.observed_generation == lb.generation
            assert st.lbns["n1"].applied_generation > st.lbns["n3"].applied_generation
            gate.set()
            await w.converge()
            st = await w.status("lb1")
            assert st is not None and st.observed_generation == lb.generation + 1

    run(body)


def test_a_services_cost_counts_the_backend_entries_the_nodes_apply_takes() -> None:
    """Behind tunnels a backend takes 2 entries of the backend array (every
    endpoint IPv4) or 3 (one IPv6): the operator places by what the nodes'
    apply allocates (dataplane/tables.py), not one entry per backend."""

    def service(segment: dict[str, object], vteps: list[str | None]) -> RuleService:
        overlay = segment["type"] != "vlan"
        return RuleService.model_validate(
            {
                "vip": "203.0.113.1",
                "port": 80,
                "protocol": "tcp",
                "segment": segment,
                "table_size": 1009,
                "backends": [
                    {"id": f"m{i}", "mac": f"02:00:00:00:00:{i + 1:02x}", "vni": 7 if overlay else None, "vtep": v}
                    for i, v in enumerate(vteps)
                ],
            }
        )

    vlan = service({"type": "vlan", "id": 10}, [None] * 4)
    v4 = service({"type": "vxlan", "id": 5000}, ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"])
    mixed = service({"type": "geneve", "id": 5000}, ["192.0.2.1", "2001:db8::1", "192.0.2.3", "192.0.2.4"])
    assert cost([vlan])[2] == 4
    assert cost([v4])[2] == 4 * abi.TUNNEL4_STRIDE == 8
    assert cost([mixed])[2] == 4 * abi.TUNNEL_STRIDE == 12
    assert cost([vlan, v4, mixed]) == (3, cost([vlan])[1] * 3, 24)
