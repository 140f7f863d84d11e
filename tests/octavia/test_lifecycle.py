"""Through the real Octavia API (openstacksdk, as a user of a cloud would),
with xdsr as the provider: a load balancer with a TCP and a UDP listener,
their pools, members and a health monitor; every object reaches
ACTIVE/ONLINE as the LB nodes report it, real traffic in network namespaces
reaches the members through the LB nodes, and follows member updates and
deletes; statistics arrive; a cascade delete removes everything, in Octavia
and in xdsr, and the VIP stops answering."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import needs_root
from tests.octavia.conftest import BACKEND_SUBNET, FRONTEND_SUBNET, PROJECT, VIP, Env, until
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import installed

pytestmark = needs_root

WAIT: dict[str, Any] = {"interval": 0.1, "wait": 30}


def tcp_backends(env: Env, conns: int = 40) -> set[str]:
    result = env.fab.tcp_client("a", conns=conns, interval_ms=50, duration=0.4)
    assert not result.broken, result.broken[:2]
    assert not result.switched
    return set(result.by_backend())


def udp_backends(env: Env, flows: int = 60) -> set[str]:
    result = env.fab.udp_client("a", flows=flows, reply_timeout=1.0)
    assert not result.unanswered, f"{len(result.unanswered)} of {flows} UDP flows unanswered"
    return set(result.by_backend())


@pytest.fixture
def conn(env: Env) -> Any:
    return env.octavia.openstack(PROJECT)


def _served_cleanly(env: Env) -> set[str] | None:
    """The members serving new connections, None while some still fail (a
    change on its way to the tables)."""
    result = env.fab.tcp_client("a", conns=40, interval_ms=50, duration=0.3)
    return None if result.broken or result.switched else set(result.by_backend())


def test_lifecycle_through_octavia(env: Env, conn: Any) -> None:
    lbapi = conn.load_balancer
    be = env.fab.tenant("a").backends
    udp_port = env.fab.tenant("a").udp_port

    lb = lbapi.create_load_balancer(name="web", vip_address=VIP, vip_subnet_id=FRONTEND_SUBNET)
    assert lb.provider == "xdsr"
    lbapi.wait_for_load_balancer(lb.id, **WAIT)

    tcp = lbapi.create_listener(name="tcp-80", loadbalancer_id=lb.id, protocol="TCP", protocol_port=80)
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    udp = lbapi.create_listener(name="udp", loadbalancer_id=lb.id, protocol="UDP", protocol_port=udp_port)
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    tcp_pool = lbapi.create_pool(name="tcp", listener_id=tcp.id, protocol="TCP", lb_algorithm="SOURCE_IP_PORT")
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    udp_pool = lbapi.create_pool(name="udp", listener_id=udp.id, protocol="UDP", lb_algorithm="ROUND_ROBIN")
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    members = []
    for b in be[:3]:
        members.append(lbapi.create_member(tcp_pool, address=b.ip, protocol_port=80, subnet_id=BACKEND_SUBNET))
        lbapi.wait_for_load_balancer(lb.id, **WAIT)
    # The UDP pool in one batch (Octavia's PUT of the pool's member list).
    lbapi.put(
        f"/lbaas/pools/{udp_pool.id}/members",
        json={"members": [{"address": b.ip, "protocol_port": udp_port, "subnet_id": BACKEND_SUBNET} for b in be[:2]]},
    ).raise_for_status()
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    hm = lbapi.create_health_monitor(
        pool_id=tcp_pool.id, type="TCP", delay=1, timeout=1, max_retries=1, max_retries_down=2
    )
    lbapi.wait_for_load_balancer(lb.id, **WAIT)

    # Every object ACTIVE and ONLINE, in Octavia, as the LB nodes report it.
    tree = env.tree(lb.id)
    assert (tree["provisioning_status"], tree["operating_status"]) == ("ACTIVE", "ONLINE"), tree
    assert len(tree["listeners"]) == 2
    for li in tree["listeners"]:
        assert (li["provisioning_status"], li["operating_status"]) == ("ACTIVE", "ONLINE"), li
        (pool,) = li["pools"]
        assert (pool["provisioning_status"], pool["operating_status"]) == ("ACTIVE", "ONLINE"), pool
        assert {(m["provisioning_status"], m["operating_status"]) for m in pool["members"]} == {("ACTIVE", "ONLINE")}
    assert lbapi.get_health_monitor(hm.id).provisioning_status == "ACTIVE"
    # xdsr holds the same objects under Octavia's ids.
    with env.xdsr() as x:
        got = x.get(f"/v2/lbaas/loadbalancers/{lb.id}").json()["loadbalancer"]
    assert {li["id"] for li in got["listeners"]} == {tcp.id, udp.id}
    assert {p["id"] for p in got["pools"]} == {tcp_pool.id, udp_pool.id}

    # Real traffic reaches the members through the LB nodes.
    assert tcp_backends(env) == {b.name for b in be[:3]}
    assert udp_backends(env) == {b.name for b in be[:2]}

    # A member's service dies: the LB nodes' health checks take it out of
    # every table and Octavia shows it ERROR; when it answers again it is
    # back, ONLINE. (iptables in its namespace: what a dead server answers.)
    reject = ["INPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"]
    env.fab.lab.run(be[0].netns, ["iptables", "-w", "-I", *reject])
    try:
        until(lambda: lbapi.get_member(members[0], tcp_pool).operating_status == "ERROR", what="member ERROR")
        until(lambda: _served_cleanly(env) == {b.name for b in be[1:3]}, what="traffic without the dead member")
    finally:
        env.fab.lab.run(be[0].netns, ["iptables", "-w", "-D", *reject])
    until(lambda: lbapi.get_member(members[0], tcp_pool).operating_status == "ONLINE", what="member ONLINE again")
    until(lambda: _served_cleanly(env) == {b.name for b in be[:3]}, what="traffic reaches it again")

    # A fourth member joins; weight 0 drains one; one leaves: traffic follows.
    members.append(lbapi.create_member(tcp_pool, address=be[3].ip, protocol_port=80, subnet_id=BACKEND_SUBNET))
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    assert tcp_backends(env) == {b.name for b in be}
    lbapi.update_member(members[0], tcp_pool, weight=0)
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    assert lbapi.get_member(members[0], tcp_pool).provisioning_status == "ACTIVE"
    assert tcp_backends(env) == {b.name for b in be[1:]}
    lbapi.delete_member(members[1], tcp_pool)
    lbapi.wait_for_load_balancer(lb.id, **WAIT)
    env.wait_gone(f"/v2/lbaas/pools/{tcp_pool.id}/members/{members[1].id}")
    assert tcp_backends(env) == {be[2].name, be[3].name}
    assert members[1].id not in env.xdsr_ids()

    # The listeners' counters reach Octavia (the agent reports them every stats_interval).
    stats = until(
        lambda: (s := lbapi.get_listener_statistics(tcp.id)).bytes_in > 0 and s,
        what="TCP listener statistics in Octavia",
    )
    assert stats.bytes_out == 0  # L2DSR: replies bypass the LB nodes
    until(lambda: lbapi.get_listener_statistics(udp.id).bytes_in > 0, what="UDP listener statistics in Octavia")

    # Cascade delete: gone from Octavia and from xdsr, served by no LB node.
    lbapi.delete_load_balancer(lb.id, cascade=True)
    env.wait_gone(f"/v2/lbaas/loadbalancers/{lb.id}")
    with env.xdsr() as x:
        assert x.get(f"/v2/lbaas/loadbalancers/{lb.id}").status_code == 404
    for name, pin in env.cluster.pin_dirs.items():
        with Dataplane.open(pin) as dp:
            assert installed(dp) == [], f"{name} still holds services"
    result = env.fab.tcp_client("a", conns=5, duration=0.2, connect_timeout=1.0)
    assert len(result.broken) == 5
