"""The operator's metrics follow what its passes do: pushes and push
failures per node, load balancers by status, nodes up, pass durations."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.operator.test_passes import endpoint, load_balancer, run, until, world


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_pushes_failures_statuses_and_nodes_up() -> None:
    async def body() -> None:
        async with world(group_size=2) as w:
            await w.register("mx1")
            await w.register("mx2")
            pushed = value("xdsr_operator_pushes_total", node="mx1")
            failed = value("xdsr_operator_push_failures_total", node="mx2")
            w.nodes.unreachable.add(endpoint("mx2"))
            await w.put_lb(load_balancer("lbm", vip="203.0.113.77"))
            await w.converge()
            assert value("xdsr_operator_pushes_total", node="mx1") > pushed
            await until(
                lambda: value("xdsr_operator_push_failures_total", node="mx2") > failed, 5, "no push failure counted"
            )
            assert value("xdsr_operator_node_up", node="mx1") == 1.0
            assert value("xdsr_operator_node_up", node="mx2") == 0.0
            st = await w.status("lbm")
            assert st is not None
            labels = {"provisioning_status": st.provisioning_status, "operating_status": st.operating_status}
            assert value("xdsr_loadbalancers", **labels) >= 1.0

    run(body)


def test_a_node_whose_bgp_session_is_down_is_shown() -> None:
    """What a node registers of its BGP speaker (docs/bgp.md) reaches the
    operator's metrics: 0 while a session is down or the node withdrew."""
    from xdsr.model import keys
    from xdsr.model.group import LbnRecord
    from xdsr.store.docs import dump

    async def body() -> None:
        async with world(group_size=1) as w:
            lease = await w.register("mb1")
            assert REGISTRY.get_sample_value("xdsr_operator_node_bgp_up", {"node": "mb1"}) is None  # no BGP
            for said, up in (
                ("announcing", 1.0),
                ("announcing; sessions down: rt_a", 0.0),
                ("drained", 0.0),
                ("withdrawn: the XDP program is gone", 0.0),
            ):
                record = LbnRecord(name="mb1", endpoint=endpoint("mb1"), started_at=1.0, bgp=said)
                rev = await w.store.put(keys.lbn_key("mb1"), dump(record), lease=lease)
                await w.op.lbns.wait_for(rev)
                await until(lambda up=up: value("xdsr_operator_node_bgp_up", node="mb1") == up, 5, f"bgp {said}")

    run(body)
