"""Failure containment: a load balancer that cannot be forwarded (values a
node refuses, tables that do not fit, a VIP another one serves) fails alone,
with its reason, and every other load balancer of its group converges; a
node that fails is retried with a growing, capped, jittered delay.

Over the memory store with the in-process agents of test_passes (the agent's
own checks, and what one node alone may refuse)."""

from __future__ import annotations

from tests.operator.test_passes import (
    World,
    counting_world,
    endpoint,
    held_rules,
    load_balancer,
    run,
    until,
    world,
)
from xdsr.maglev import default_table_size
from xdsr.model import keys
from xdsr.model.agent import RuleService
from xdsr.model.loadbalancer import LoadBalancer
from xdsr.operator import metrics
from xdsr.operator.view import Settings
from xdsr.store.docs import dump

BIG_TABLE = 4194301  # the largest table size: 65536 slot chunks with up to 255 backends


async def settle(w: World, passes: int = 12) -> None:
    """World.converge, where a push a node refused also ends the wait: the
    operator's loop would run the next pass at once (its refusal kicks it),
    the test runs it by hand."""
    for _ in range(passes):
        _, before = await w.store.list("/")
        await w.op.reconcile()
        await until(
            lambda: (
                bool(w.op._node_refusals)
                or all(
                    n.wanted is None
                    or endpoint(n.name) in w.nodes.unreachable
                    or (n.state is not None and n.state.generation == n.wanted.generation)
                    for n in w.op.nodes.values()
                )
            ),
            5,
            "the node workers did not push",
        )
        _, after = await w.store.list("/")
        if after == before and not w.op._node_refusals:
            return
        await w._caught_up(after)
    raise AssertionError(f"no fixed point after {passes} passes")


def on_every_node(w: World, lb_id: str) -> bool:
    return all(lb_id in held_rules(w, n) for n in ("n1", "n2", "n3"))


async def assert_active(w: World, *lb_ids: str) -> None:
    for lb_id in lb_ids:
        st = await w.status(lb_id)
        assert st is not None and st.provisioning_status == "ACTIVE" and st.error is None, (lb_id, st)
        assert on_every_node(w, lb_id), lb_id


async def put_raw(w: World, lb: LoadBalancer) -> None:
    """Straight into the store: a value the API would refuse (or one it
    cannot know a node refuses) reaches the operator."""
    got = await w.store.get(keys.lb_key(lb.id))
    rev = await w.store.put(keys.lb_key(lb.id), dump(lb), expect=got.mod_revision if got else 0)
    await w.op.lbs.wait_for(rev)


def test_a_service_one_node_refuses_fails_alone_and_the_group_converges() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            bad_vip = "203.0.113.66"

            def refuses(ep: str, s: RuleService) -> str | None:
                # n2 alone cannot take this VIP (say a route or a kernel of its own).
                return "not on this node" if ep == endpoint("n2") and str(s.vip) == bad_vip else None

            w.nodes.refuses = refuses
            # One pass carries the offender, another tenant's new load
            # balancer and a change to an existing one: one delta to each node.
            await w.put_lb(load_balancer("lb7", vip=bad_vip))
            await w.put_lb(load_balancer("lb8", vip="203.0.113.68"))
            await w.put_lb(load_balancer("lb0", vip="203.0.113.10", n_members=3, generation=2))
            await settle(w)

            await assert_active(w, "lb0", "lb1", "lb8")
            assert [b.id for b in held_rules(w, "n2")["lb0"][0].backends][-1] == "lb0-m2"
            st = await w.status("lb7")
            assert st is not None and st.provisioning_status == "ERROR"
            assert "refused by an LB node" in (st.error or "") and "not on this node" in (st.error or "")
            assert st.listeners["l1"].operating_status == "ERROR"
            assert not any("lb7" in held_rules(w, n) for n in ("n1", "n2", "n3")), "off the whole group"
            assert (await w.placed())["g1/lb7"].refused is not None

            # Nothing is retried: the group is settled, n2 gets no more pushes.
            pushes = w.nodes.pushes
            await w.op._poll_nodes()
            await settle(w)
            assert w.nodes.pushes == pushes

            # n2 restarts with empty maps: the full state it gets leaves lb7 out.
            w.nodes.restart("n2")
            await w.op._poll_nodes()
            await settle(w)
            await assert_active(w, "lb0", "lb1", "lb8")

            # Changed so that n2 takes it, it is placed again.
            await w.put_lb(load_balancer("lb7", vip="203.0.113.67", generation=2))
            await settle(w)
            await assert_active(w, "lb7")

    run(body)


def test_a_full_state_a_node_refuses_takes_off_only_the_load_balancer_it_names() -> None:
    async def body() -> None:
        async with counting_world(3) as w:
            w.nodes.refuses = lambda ep, s: "no" if ep == endpoint("n3") and s.id == "lb1/l1" else None
            w.nodes.restart("n3")  # n3 comes back empty: a full state, which it refuses for lb1 alone
            await w.op._poll_nodes()
            await settle(w)
            await assert_active(w, "lb0", "lb2")
            st = await w.status("lb1")
            assert st is not None and st.provisioning_status == "ERROR" and "services[" in (st.error or "")

    run(body)


def test_a_value_the_api_would_refuse_is_refused_by_the_operator_and_never_pushed() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            bad = load_balancer("lb5", vip="203.0.113.15")
            pool = bad.pools[0]
            members = [pool.members[0].model_copy(update={"address": "224.0.0.1"}), *pool.members[1:]]
            bad = bad.model_copy(update={"pools": [pool.model_copy(update={"members": members})]})
            await put_raw(w, bad)
            await w.put_lb(load_balancer("lb6", vip="203.0.113.16"))
            await settle(w)
            await assert_active(w, "lb0", "lb1", "lb6")
            st = await w.status("lb5")
            assert st is not None and st.provisioning_status == "ERROR"
            assert "backends[0].address" in (st.error or ""), st.error
            assert not any(
                "lb5" in sent.changes or any(s.id == "lb5/l1" for s in sent.services) for _, sent, _ in w.nodes.bodies
            )

            # The same value in an update of a forwarding load balancer: refused,
            # and the rules it had keep forwarding.
            before = held_rules(w, "n1")["lb1"]
            pool = load_balancer("lb1", vip="203.0.113.11").pools[0]
            members = [pool.members[0].model_copy(update={"address": "255.255.255.255"})]
            broken = load_balancer("lb1", vip="203.0.113.11", generation=2)
            await put_raw(w, broken.model_copy(update={"pools": [pool.model_copy(update={"members": members})]}))
            await settle(w)
            st = await w.status("lb1")
            assert st is not None and st.provisioning_status == "ERROR" and st.computed_for == 2
            assert all(held_rules(w, n)["lb1"] == before for n in ("n1", "n2", "n3"))
            await assert_active(w, "lb0", "lb6")

    run(body)


def test_slot_memory_is_accounted_when_placing_and_admitting_changes() -> None:
    async def body() -> None:
        async with world(group_size=3) as w:
            # Nodes with room for 2 of the largest tables (65536 slot chunks
            # each) and 6 chunks: one small table (4 chunks) more, not two.
            chunks = 2 * 65536 + 6
            w.nodes.slot_chunks = chunks
            for name in ("n1", "n2", "n3"):
                await w.register(name, slot_chunks=chunks)

            def sized(lb: LoadBalancer, table_size: int | None) -> LoadBalancer:
                return lb.model_copy(update={"pools": [lb.pools[0].model_copy(update={"table_size": table_size})]})

            await w.put_lb(sized(load_balancer("small", vip="203.0.113.10"), None))
            await w.put_lb(sized(load_balancer("big", vip="203.0.113.11"), BIG_TABLE))
            await settle(w)
            await assert_active(w, "small", "big")

            # One tenant's two more of them do not fit: it fails alone, with the reason.
            two = load_balancer("hog", vip="203.0.113.12")
            two = two.model_copy(
                update={
                    "listeners": [*two.listeners, two.listeners[0].model_copy(update={"id": "l2", "protocol_port": 81})]
                }
            )
            await w.put_lb(sized(two, BIG_TABLE))
            await w.put_lb(sized(load_balancer("other", vip="203.0.113.13"), None))
            await settle(w)
            await assert_active(w, "small", "big", "other")
            st = await w.status("hog")
            assert st is not None and st.provisioning_status == "ERROR"
            assert "slot chunks" in (st.error or ""), st.error
            assert "g1/hog" not in await w.placed()

            # Growing a placed table so that the group would hold two large
            # and one small table: that fits, but the new table is written
            # beside the old one, which does not: refused, the old table
            # keeps forwarding.
            await w.put_lb(sized(load_balancer("small", vip="203.0.113.10", generation=2), BIG_TABLE))
            await settle(w)
            st = await w.status("small")
            assert st is not None and st.provisioning_status == "ERROR" and "slot chunks" in (st.error or "")
            (svc,) = held_rules(w, "n1")["small"]
            assert svc.table_size == default_table_size(2)
            await assert_active(w, "big", "other")

            # Room made (big and other deleted), the hog is placed at the next pass.
            await w.put_lb(load_balancer("big", vip="203.0.113.11", generation=2, deleting=True))
            await w.put_lb(load_balancer("other", vip="203.0.113.13", generation=2, deleting=True))
            await settle(w)
            await assert_active(w, "hog")

    run(body)


def test_a_vip_conflict_fails_alone_and_the_group_converges() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            await w.put_lb(load_balancer("lb9", vip="203.0.113.10"))  # lb0's VIP, port and segment
            await w.put_lb(load_balancer("lb3", vip="203.0.113.13"))
            await settle(w)
            await assert_active(w, "lb0", "lb1", "lb3")
            st = await w.status("lb9")
            assert st is not None and st.provisioning_status == "ERROR" and "already served" in (st.error or "")

    run(body)


def test_pushes_to_a_failing_node_back_off_up_to_a_cap_and_reset_on_success() -> None:
    async def body() -> None:
        async with counting_world(1) as w:
            w.op.settings = Settings(group_size=3, retry=0.01, retry_max=0.08)
            for n in range(1, 12):
                d = w.op._backoff(n)
                ceiling = min(0.08, 0.01 * 2 ** (n - 1))
                assert ceiling / 2 <= d <= ceiling, (n, d)

            node = w.op.nodes["n2"]
            w.nodes.unreachable.add(endpoint("n2"))
            await w.put_lb(load_balancer("lb4", vip="203.0.113.14"))
            await w.op.reconcile()
            await until(lambda: node.failures >= 5, 10, "failures in a row")
            gauge = metrics.PUSH_BACKOFF.labels("n2")._value.get()
            assert 0 < gauge <= 0.08

            w.nodes.unreachable.discard(endpoint("n2"))
            await until(lambda: node.failures == 0, 10, "a push through")
            assert metrics.PUSH_BACKOFF.labels("n2")._value.get() == 0
            await settle(w)
            await assert_active(w, "lb0", "lb4")

    run(body)


def test_a_failure_naming_no_service_is_the_load_balancer_the_push_carried() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            # Nodes that did not tell their slot memory (an older agent), and
            # have room for one large table: the operator cannot foresee it.
            w.nodes.slot_chunks = 65536 + 100
            for lb_id, vip in (("lb5", "203.0.113.15"), ("lb6", "203.0.113.16")):
                big = load_balancer(lb_id, vip=vip)
                pools = [big.pools[0].model_copy(update={"table_size": BIG_TABLE})]
                await w.put_lb(big.model_copy(update={"pools": pools}))
                await settle(w)
            await w.put_lb(load_balancer("lb7", vip="203.0.113.17"))
            await settle(w)
            await assert_active(w, "lb0", "lb1", "lb5", "lb7")
            st = await w.status("lb6")
            assert st is not None and st.provisioning_status == "ERROR"
            assert "refused by an LB node" in (st.error or "") and "no room" in (st.error or ""), st.error

    run(body)


def test_a_node_given_a_generation_by_someone_else_is_not_taken_as_current() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            ep = endpoint("n2")
            # A PUT /v1/state by hand: generation 999999 of the group's own epoch, holding nothing.
            w.nodes.held[ep] = w.nodes.held[ep].model_copy(update={"generation": 999999, "services": []})
            w.nodes.rules[ep] = {}
            await w.op._poll_nodes()
            await w.put_lb(load_balancer("lb3", vip="203.0.113.13"))
            await w.op.reconcile()
            await until(lambda: w.op.nodes["n2"].error is not None, 5, "the node's answer")
            await w.op.reconcile()
            for lb_id in ("lb0", "lb3"):
                st = await w.status(lb_id)
                assert st is not None and st.provisioning_status == "ERROR", (lb_id, st)
                assert "not installed on LB node(s) n2" in (st.error or "")
                assert st.lbns["n2"].error is not None and "999999" in st.lbns["n2"].error

    run(body)


def test_while_a_change_is_on_its_way_the_status_shows_what_the_nodes_forward() -> None:
    async def body() -> None:
        async with counting_world(2) as w:
            before = await w.status("lb0")
            assert before is not None and before.operating_status == "ONLINE"
            # The change cannot reach any node yet (say it is on its way):
            # every node still forwards generation 1, and says so.
            for n in ("n1", "n2", "n3"):
                w.nodes.unreachable.add(endpoint(n))
            await w.put_lb(load_balancer("lb0", vip="203.0.113.10", n_members=3, generation=2))
            await w.op.reconcile()
            st = await w.status("lb0")
            assert st is not None and st.observed_generation == 1
            assert (st.operating_status, st.listeners["l1"].operating_status) == ("ONLINE", "ONLINE")
            assert {m: s.operating_status for m, s in st.members.items()} == {
                "lb0-m0": "ONLINE",
                "lb0-m1": "ONLINE",
                "lb0-m2": "OFFLINE",  # in no table yet
            }
            for n in ("n1", "n2", "n3"):
                w.nodes.unreachable.discard(endpoint(n))
            await settle(w)
            await assert_active(w, "lb0")

    run(body)
