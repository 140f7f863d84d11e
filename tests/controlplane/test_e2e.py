"""End to end through the REST API, driven by a client nobody here wrote:
openstacksdk's load-balancer proxy, unchanged. Real traffic in network
namespaces follows every change: create, add and remove members, change a
weight, cascade delete.

openstacksdk knows nothing of VLANs, so, as with Neutron behind Octavia, the
API server maps subnet ids to segments (--networks-file): the VIP's subnet is
the frontend VLAN, the members' subnet the backend VLAN.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import openstack
import pytest

from tests.conftest import IS_ROOT, needs_root
from tests.controlplane.conftest import VIP, Env
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import installed
from xdsr.demo.cluster import LocalCluster
from xdsr.lab import FabricSpec, TenantSpec, build_fabric

pytestmark = needs_root

FRONTEND_SUBNET = str(uuid.uuid4())
BACKEND_SUBNET = str(uuid.uuid4())


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root")
    tenant = TenantSpec(name="a", n_backends=4, vip=VIP, frontend_vid=10, backend_vid=100)
    subnets = [
        {"id": FRONTEND_SUBNET, "cidr": "203.0.113.0/24", "segment": {"type": "vlan", "id": 10}},
        {"id": BACKEND_SUBNET, "cidr": "10.1.0.0/24", "segment": {"type": "vlan", "id": 100}},
    ]
    with build_fabric(FabricSpec(n_lbns=3, prefix="xcpe", tenants=(tenant,))) as fab:
        nodes = [(f"lbn{i}", fab.lbn_trunk(i).netns, fab.lbn_trunk(i).ifname) for i in range(3)]
        with LocalCluster(nodes, fab.lab.bpffs_dir(), projects=("a",), subnets=subnets) as cluster:
            yield Env(fab, cluster)


@pytest.fixture(scope="module")
def conn(env: Env) -> openstack.connection.Connection:
    # openstacksdk as a user of Octavia would run it, pointed at xdsr.
    return openstack.connection.Connection(
        auth_type="admin_token",
        auth={"endpoint": "http://unused", "token": env.cluster.tokens.projects["a"]},
        load_balancer_endpoint_override=env.cluster.api_url,
    )


def served_by(env: Env, conns: int = 40) -> set[str]:
    result = env.fab.tcp_client("a", conns=conns, interval_ms=50, duration=0.4)
    assert not result.broken, result.broken[:2]
    assert not result.switched
    return set(result.by_backend())


def test_lifecycle_with_openstacksdk(env: Env, conn: openstack.connection.Connection) -> None:
    lbapi = conn.load_balancer
    be = env.fab.tenant("a").backends
    lb = lbapi.create_load_balancer(name="web", vip_address=VIP, vip_subnet_id=FRONTEND_SUBNET)
    lb = lbapi.wait_for_load_balancer(lb.id, wait=30)
    assert lb.provisioning_status == "ACTIVE"

    listener = lbapi.create_listener(name="web-80", loadbalancer_id=lb.id, protocol="TCP", protocol_port=80)
    lbapi.wait_for_load_balancer(lb.id, wait=30)
    pool = lbapi.create_pool(name="web", listener_id=listener.id, protocol="TCP", lb_algorithm="ROUND_ROBIN")
    lbapi.wait_for_load_balancer(lb.id, wait=30)
    members = []
    for b in be[:3]:
        members.append(lbapi.create_member(pool, address=b.ip, protocol_port=80, subnet_id=BACKEND_SUBNET))
        lbapi.wait_for_load_balancer(lb.id, wait=30)
    hm = lbapi.create_health_monitor(pool_id=pool.id, type="TCP", delay=5, timeout=3, max_retries=3)
    lbapi.wait_for_load_balancer(lb.id, wait=30)

    # Everything ACTIVE/ONLINE, as the nodes report it. The proxy has no
    # method for the status tree; it is a raw GET through the same session.
    tree = lbapi.get(f"/lbaas/loadbalancers/{lb.id}/status").json()["statuses"]["loadbalancer"]
    assert (tree["provisioning_status"], tree["operating_status"]) == ("ACTIVE", "ONLINE")
    (li,) = tree["listeners"]
    assert li["operating_status"] == "ONLINE"
    assert {m["operating_status"] for m in li["pools"][0]["members"]} == {"ONLINE"}
    assert lbapi.get_health_monitor(hm.id).provisioning_status == "ACTIVE"
    assert served_by(env) == {b.name for b in be[:3]}

    # A fourth member joins: traffic reaches it.
    members.append(lbapi.create_member(pool, address=be[3].ip, protocol_port=80, subnet_id=BACKEND_SUBNET))
    lbapi.wait_for_load_balancer(lb.id, wait=30)
    assert served_by(env) == {b.name for b in be}

    # Weight 0 drains a member: no new connection goes to it.
    lbapi.update_member(members[0], pool, weight=0)
    lbapi.wait_for_load_balancer(lb.id, wait=30)
    assert served_by(env) == {b.name for b in be[1:]}

    # A member leaves.
    lbapi.delete_member(members[1], pool)
    lbapi.wait_for_load_balancer(lb.id, wait=30)
    assert served_by(env) == {be[2].name, be[3].name}
    stats = lbapi.get_listener_statistics(listener.id)
    assert stats.bytes_in > 0

    # Cascade delete: the VIP is served by nobody, on every node.
    lbapi.delete_load_balancer(lb.id, cascade=True)
    lbapi.wait_for_delete(lbapi.get_load_balancer(lb.id), wait=30)
    for name, pin in env.cluster.pin_dirs.items():
        with Dataplane.open(pin) as dp:
            assert installed(dp) == [], f"{name} still holds services"
    result = env.fab.tcp_client("a", conns=5, duration=0.2, connect_timeout=1.0)
    assert len(result.broken) == 5
