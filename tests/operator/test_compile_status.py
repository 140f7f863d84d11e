"""From a load balancer to rules, and from node reports to status: pure logic."""

from __future__ import annotations

from xdsr.maglev import default_table_size
from xdsr.model.agent import AgentState, RuleService, Segment, ServiceReport
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool
from xdsr.operator.compile import compile_lb, sized, without
from xdsr.operator.status import NodeReport, Placement, _combine, compute, judge_health

NOW = "2026-11-26T00:00:00Z"


def lb(**extra: object) -> LoadBalancer:
    members = [
        Member(id=f"m{i}", project_id="p", created_at=NOW, address=f"10.1.0.{11 + i}", protocol_port=80)
        for i in range(3)
    ]
    members[1] = members[1].model_copy(update={"mac_address": "02:00:00:00:00:02", "weight": 5})
    members[2] = members[2].model_copy(update={"admin_state_up": False})
    doc = LoadBalancer(
        id="lb1",
        project_id="p",
        created_at=NOW,
        vip_address="203.0.113.10",
        vip_segment={"type": "vlan", "id": 10},
        generation=4,
        listeners=[
            Listener(id="l1", project_id="p", created_at=NOW, protocol="TCP", protocol_port=80, default_pool_id="p1"),
            Listener(id="l2", project_id="p", created_at=NOW, protocol="UDP", protocol_port=53),
        ],
        pools=[
            Pool(id="p1", project_id="p", created_at=NOW, protocol="TCP", lb_algorithm="ROUND_ROBIN", members=members)
        ],
    )
    return doc.model_copy(update=extra)


def test_compile_one_service_per_listener_with_a_pool() -> None:
    (svc,) = compile_lb(lb())
    assert svc.id == "lb1/l1" and svc.port == 80 and svc.protocol == "tcp" and svc.segment.id == 10
    assert [(b.id, b.mac, b.vlan, b.weight) for b in svc.backends] == [
        ("m0", None, 10, 1),
        ("m1", "02:00:00:00:00:02", 10, 5),
        ("m2", None, 10, 0),  # disabled: keeps its identity, gets no slots
    ]
    assert compile_lb(lb(admin_state_up=False)) == []
    assert compile_lb(lb(deleting=True)) == []
    assert all(b.vni is None and b.vtep is None for b in svc.backends)


def test_compile_members_on_an_overlay_carry_their_vni_and_tunnel_endpoint() -> None:
    doc = lb(vip_segment=Segment(type="vxlan", id=5001))
    members = doc.pools[0].members
    members[0].vtep_address = "192.0.2.10"  # on the VIP's VNI
    members[1].segment = Segment(type="vxlan", id=5002)  # on another VNI, its endpoint left to the nodes
    members[1].vtep_address = None
    (svc,) = compile_lb(doc)
    assert svc.segment == Segment(type="vxlan", id=5001)
    assert [(b.id, b.mac, b.vlan, b.vni, b.vtep and str(b.vtep)) for b in svc.backends] == [
        ("m0", None, 0, 5001, "192.0.2.10"),
        ("m1", "02:00:00:00:00:02", 0, 5002, None),
        ("m2", None, 0, 5001, None),
    ]
    # What the operator sends is what the agents accept, unchanged.
    sent = svc.model_dump(mode="json")
    assert RuleService.model_validate(sent).model_dump(mode="json") == sent


def test_table_sizes_are_settled_once_and_kept_while_they_fit() -> None:
    doc = lb()
    (first,) = sized(compile_lb(doc), None)
    assert first.table_size == default_table_size(2)  # two weighted members (m2 is disabled)
    assert compile_lb(doc)[0].table_size is None, "the compiled rules are not modified"

    # Members join, leave, get disabled: the size the nodes hold stays, so
    # Maglev moves only the changed members' share of the flows.
    pool = doc.pools[0]
    more = [*pool.members, pool.members[0].model_copy(update={"id": "m3", "address": "10.1.0.20"})]
    for members in (more, pool.members[:1], [m.model_copy(update={"weight": 0}) for m in pool.members]):
        changed = doc.model_copy(update={"pools": [pool.model_copy(update={"members": members})]})
        (svc,) = sized(compile_lb(changed), [first])
        assert svc.table_size == first.table_size, [m.id for m in members]

    # Five times as many members no longer fit: the table grows.
    many = [pool.members[0].model_copy(update={"id": f"x{i}"}) for i in range(10)]
    (svc,) = sized(compile_lb(doc.model_copy(update={"pools": [pool.model_copy(update={"members": many})]})), [first])
    assert svc.table_size == default_table_size(10)

    # A size the user set is theirs.
    pinned = doc.model_copy(update={"pools": [pool.model_copy(update={"table_size": 65537})]})
    assert sized(compile_lb(pinned), [first])[0].table_size == 65537


def _state(gen: int, ok: bool = True, unresolved: list[str] | None = None) -> AgentState:
    return AgentState(
        name="n",
        generation=gen,
        services=[
            ServiceReport(
                id="lb1/l1", ok=ok, error=None if ok else "full", unresolved=unresolved or [], packets=7, bytes=700
            )
        ],
    )


def test_active_only_when_every_live_node_applied() -> None:
    doc = lb()
    place = Placement("g1", generation=4, needed_revision=100)
    nodes = [NodeReport("a", True, _state(100), None), NodeReport("b", True, _state(99), None)]
    st = compute(doc, place, nodes, None)
    assert st.observed_generation == 0, "one node is behind"
    nodes[1] = NodeReport("b", True, _state(100), None)
    st = compute(doc, place, nodes, None)
    assert st.observed_generation == 4 and st.provisioning_status == "ACTIVE"
    assert st.listeners["l1"].operating_status == "ONLINE"
    assert st.listeners["l2"].operating_status == "OFFLINE"  # no pool
    assert st.stats["l1"].packets == 14
    # a dead node does not hold the others back
    nodes.append(NodeReport("c", False, None, "gone"))
    assert compute(doc, place, nodes, None).observed_generation == 4


def test_unresolved_member_and_failed_service() -> None:
    doc = lb()
    place = Placement("g1", generation=4, needed_revision=10)
    st = compute(doc, place, [NodeReport("a", True, _state(10, unresolved=["m0"]), None)], None)
    assert st.members["m0"].operating_status == "ERROR"
    assert st.members["m1"].operating_status == "ONLINE"
    assert st.members["m2"].operating_status == "OFFLINE"
    assert st.pools["p1"].operating_status == "DEGRADED"
    assert st.operating_status == "DEGRADED"
    st = compute(doc, place, [NodeReport("a", True, _state(10, ok=False), None)], None)
    assert st.provisioning_status == "ERROR" and "full" in (st.error or "")
    assert st.listeners["l1"].operating_status == "ERROR"


def test_refused_listener_and_no_nodes() -> None:
    doc = lb()
    st = compute(doc, Placement(None, 0, 0, "no group of LB nodes can take it"), [], None)
    assert st.observed_generation == 0 and "no group" in (st.error or "")
    place = Placement("g1", 4, 10, "203.0.113.10:80/tcp is already served by load balancer x", frozenset({"l1"}))
    st = compute(doc, place, [NodeReport("a", True, _state(10), None)], None)
    assert st.provisioning_status == "ERROR"
    assert st.listeners["l1"].provisioning_status == "ERROR"


def _checked(down: list[str] | None = None, unchecked: list[str] | None = None) -> AgentState:
    return AgentState(
        name="n",
        generation=100,
        services=[ServiceReport(id="lb1/l1", ok=True, down=down or [], unchecked=unchecked or [])],
    )


def test_health_monitor_compiles_to_checks_and_down_members_to_weight_0() -> None:
    hm = HealthMonitor(
        id="hm", project_id="p", created_at=NOW, pool_id="p1", type="HTTP", delay=2, timeout=1, max_retries=2
    )
    (svc,) = compile_lb(lb(healthmonitors=[hm]))
    assert svc.health is not None and (svc.health.type, svc.health.delay, svc.health.rise, svc.health.fall) == (
        "tcp",  # HTTP is checked as a TCP handshake
        2,
        2,
        3,
    )
    assert compile_lb(lb(healthmonitors=[hm.model_copy(update={"admin_state_up": False})]))[0].health is None
    # Whatever Octavia accepts compiles: 0 s and 2^31 s are clamped to what a node runs.
    for delay, timeout, want in ((0, 0, (1, 1)), (2**31 - 1, 2**31 - 1, (3600, 3600)), (10, 30, (10, 10))):
        odd = hm.model_copy(update={"delay": delay, "timeout": timeout})
        (c,) = compile_lb(lb(healthmonitors=[odd]))
        assert c.health is not None and (c.health.delay, c.health.timeout) == want
    (out,) = without([svc], {"lb1/l1": {"m0"}})
    assert [(b.id, b.weight) for b in out.backends] == [("m0", 0), ("m1", 5), ("m2", 0)]
    assert svc.backends[0].weight == 1, "the compiled rules are not modified"


def test_most_nodes_must_agree_a_member_is_down() -> None:
    nodes = [
        NodeReport("a", True, _checked(down=["m0", "m1"]), None),
        NodeReport("b", True, _checked(down=["m0"], unchecked=["m1"]), None),
        NodeReport("c", True, _checked(unchecked=["m1"]), None),
        NodeReport("d", False, _checked(down=["m1"]), None),  # not live: no vote
    ]
    h = judge_health("lb1", nodes)
    # m0: 2 of 3 say down. m1: only one node can check it, and it says down.
    assert h.down["lb1/l1"] == {"m0", "m1"}
    assert h.unchecked["lb1/l1"] == {"m1"}
    h = judge_health("lb1", [*nodes[:1], NodeReport("b", True, _checked(), None)])
    assert h.down["lb1/l1"] == frozenset(), "1 of 2 is no majority"

    hm = HealthMonitor(id="hm", project_id="p", created_at=NOW, pool_id="p1", type="TCP", delay=2, timeout=1,
                       max_retries=2)  # fmt: skip
    st = compute(lb(healthmonitors=[hm]), Placement("g1", generation=4, needed_revision=100), nodes[:3], None)
    assert {m: s.operating_status for m, s in st.members.items()} == {"m0": "ERROR", "m1": "ERROR", "m2": "OFFLINE"}
    assert st.pools["p1"].operating_status == "ERROR"
    blind = [NodeReport(n, True, _checked(unchecked=["m0"]), None) for n in "ab"]
    st = compute(lb(healthmonitors=[hm]), Placement("g1", generation=4, needed_revision=100), blind, None)
    assert st.members["m0"].operating_status == "NO_MONITOR" and st.members["m1"].operating_status == "ONLINE"


def test_a_node_that_forwards_but_does_not_announce_degrades_the_load_balancer() -> None:
    """With BGP the router sends the VIP only to the nodes announcing it: one
    that forwards but is drained, withdrawn or has a session down carries
    none of the traffic (DEGRADED); none announcing leaves the VIP
    unreachable (ERROR). Nodes that speak no BGP do not count."""
    doc = lb()
    place = Placement("g1", generation=4, needed_revision=10)

    def nodes(*said: str | None) -> list[NodeReport]:
        return [NodeReport(f"n{i}", True, _state(10), None, s) for i, s in enumerate(said)]

    st = compute(doc, place, nodes("announcing", "announcing", None), None)
    assert st.operating_status == "ONLINE"
    assert [(r.bgp, r.announcing) for r in st.lbns.values()] == [
        ("announcing", True),
        ("announcing", True),
        (None, None),
    ]
    for other in ("drained", "withdrawn: XDP program 7 is no longer attached", "announcing; sessions down: rt_a"):
        st = compute(doc, place, nodes("announcing", other, "announcing"), None)
        assert st.operating_status == "DEGRADED", other
        assert st.lbns["n1"].announcing is False and st.lbns["n1"].bgp == other
        assert st.provisioning_status == "ACTIVE" and st.listeners["l1"].operating_status == "ONLINE"
    st = compute(doc, place, nodes("drained", "drained", "announcing; sessions down: rt_a, rt_b"), None)
    assert st.operating_status == "ERROR"
    # A node that does not forward the load balancer yet (restarted, empty)
    # is judged by its listeners (not installed), not by what it announces.
    empty = AgentState(name="n", generation=0)
    behind = [*nodes("announcing", "announcing"), NodeReport("n2", True, empty, None, "withdrawn: starting")]
    st = compute(doc, place, behind, None)
    assert st.lbns["n2"].announcing is False and st.listeners["l1"].operating_status == "DEGRADED"
    no_bgp = [NodeReport(n.name, n.live, n.state, n.error) for n in behind]
    assert st.operating_status == compute(doc, place, no_bgp, None).operating_status
    # Disabled: OFFLINE whatever is announced.
    st = compute(lb(admin_state_up=False), place, nodes("drained", "drained"), None)
    assert st.operating_status == "OFFLINE"


# --- status never lies --------------------------------------------------------


def test_one_degraded_status_is_degraded_and_only_all_errors_are_error() -> None:
    assert _combine(["DEGRADED"]) == "DEGRADED"
    assert _combine(["ONLINE", "DEGRADED"]) == "DEGRADED"
    assert _combine(["ERROR", "DEGRADED"]) == "DEGRADED"
    assert _combine(["ERROR", "ONLINE"]) == "DEGRADED"
    assert _combine(["ERROR", "ERROR"]) == "ERROR"
    assert _combine(["ONLINE", "ONLINE"]) == "ONLINE"


def test_a_listener_whose_only_pool_is_degraded_is_degraded() -> None:
    place = Placement("g1", generation=4, needed_revision=10)
    st = compute(lb(), place, [NodeReport("a", True, _state(10, unresolved=["m0"]), None)], None)
    assert st.pools["p1"].operating_status == "DEGRADED"
    assert st.listeners["l1"].operating_status == "DEGRADED"
    assert st.operating_status == "DEGRADED"


def test_while_a_change_is_pending_the_nodes_still_forwarding_keep_everything_online() -> None:
    doc = lb()
    nodes = [NodeReport(n, True, _state(10), None) for n in "abc"]
    before = compute(doc, Placement("g1", generation=4, needed_revision=10), nodes, None)
    assert before.listeners["l1"].operating_status == "ONLINE" and before.operating_status == "ONLINE"

    # Generation 5 adds a member and a listener; its rules are at revision
    # 11, which one node has applied so far. The others still forward
    # generation 4's rules: nothing stopped forwarding.
    pool = doc.pools[0]
    new_member = pool.members[0].model_copy(update={"id": "m9", "address": "10.1.0.99"})
    listeners = [*doc.listeners, doc.listeners[0].model_copy(update={"id": "l3", "protocol_port": 81})]
    changed = doc.model_copy(
        update={
            "generation": 5,
            "listeners": listeners,
            "pools": [pool.model_copy(update={"members": [*pool.members, new_member]})],
        }
    )
    ahead = AgentState(name="a", generation=11, services=[ServiceReport(id=i, ok=True) for i in ("lb1/l1", "lb1/l3")])
    cases = [
        (Placement("g1", generation=4, needed_revision=10), nodes),  # its rules not written yet
        (Placement("g1", generation=5, needed_revision=11), [NodeReport("a", True, ahead, None), *nodes[1:]]),
    ]
    for place, pending in cases:
        st = compute(changed, place, pending, before)
        assert st.observed_generation == 4
        assert st.listeners["l1"].operating_status == "ONLINE"
        assert {m: s.operating_status for m, s in st.members.items() if m != "m9"} == {
            m: s.operating_status for m, s in before.members.items()
        }
        assert st.pools["p1"].operating_status == "ONLINE"
    # The new listener no node has yet is OFFLINE until one has it, never
    # ERROR; once on one node of three, that node (the one told) judges it.
    assert compute(changed, cases[0][0], cases[0][1], before).listeners["l3"].operating_status == "OFFLINE"
    assert compute(changed, cases[0][0], cases[0][1], before).operating_status == "ONLINE"
    assert st.listeners["l3"].operating_status == "ONLINE"


def test_a_node_back_at_generation_0_degrades_its_load_balancers_until_resynced() -> None:
    doc = lb()
    place = Placement("g1", generation=4, needed_revision=10)
    nodes = [NodeReport(n, True, _state(10), None) for n in "abc"]
    st = compute(doc, place, nodes, None)
    assert (st.provisioning_status, st.operating_status) == ("ACTIVE", "ONLINE")
    # c rebooted (or its pins were purged): it holds nothing at generation 0.
    for empty in (AgentState(name="c"), None):
        nodes[2] = NodeReport("c", True, empty, None)
        st = compute(doc, place, nodes, st)
        assert st.operating_status == "DEGRADED"
        assert st.listeners["l1"].operating_status == "DEGRADED"
        assert st.lbns["c"].forwarding is False and st.lbns["c"].applied_generation == 0
        assert st.observed_generation == 4  # what was made real once stays observed


def test_a_node_of_another_epoch_has_not_applied_the_groups_generations() -> None:
    doc = lb()
    place = Placement("g1", generation=4, needed_revision=10, epoch="g1:new")
    mine = _state(10).model_copy(update={"epoch": "g1:new"})
    # b holds generation 999999 of a stream the group no longer is (a store
    # rebuilt from nothing): not comparable, so not applied.
    other = _state(999999).model_copy(update={"epoch": "g1:old", "services": []})
    st = compute(doc, place, [NodeReport("a", True, mine, None), NodeReport("b", True, other, None)], None)
    assert st.observed_generation == 0
    assert st.lbns["b"].applied_generation == 0
    assert st.listeners["l1"].operating_status == "DEGRADED"


def test_a_node_past_the_groups_generation_without_the_rules_has_not_installed_them() -> None:
    # b holds a generation beyond any the operator sent in this epoch (a
    # state PUT by hand, generation 999999), without this load balancer.
    place = Placement("g1", generation=4, needed_revision=10, epoch="g1:u")
    mine = _state(10).model_copy(update={"epoch": "g1:u"})
    stray = AgentState(name="b", generation=999999, epoch="g1:u")
    st = compute(lb(), place, [NodeReport("a", True, mine, None), NodeReport("b", True, stray, None)], None)
    assert st.provisioning_status == "ERROR" and "not installed on LB node(s) b" in (st.error or "")
    assert st.listeners["l1"].operating_status == "DEGRADED"
