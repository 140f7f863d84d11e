"""Load balancers on VXLAN and Geneve networks: segments from the networks
file or the request, members with their tunnel endpoint, and what cannot
mix (a VIP on an overlay serves members on the same kind of overlay only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.apiserver.helpers import ServerThread, create_lb, create_listener, create_member, create_pool, stored, vip
from xdsr.apiserver.networks import Networks, Subnet
from xdsr.model.agent import Segment

FRONT = str(uuid.uuid4())  # the VIPs' subnet, VXLAN 5001
FRONT_NET = str(uuid.uuid4())
BACK = str(uuid.uuid4())  # members' subnet, VXLAN 5002
GENEVE = str(uuid.uuid4())  # Geneve 7001
VLAN = str(uuid.uuid4())  # VLAN 100
NETWORKS = Networks(
    [
        Subnet(id=FRONT, network_id=FRONT_NET, cidr="10.0.0.0/8", segment=Segment(type="vxlan", id=5001)),
        Subnet(id=BACK, cidr="172.16.0.0/16", segment=Segment(type="vxlan", id=5002)),
        Subnet(id=GENEVE, cidr="172.17.0.0/16", segment=Segment(type="geneve", id=7001)),
        Subnet(id=VLAN, cidr="172.18.0.0/16", segment=Segment(type="vlan", id=100)),
    ]
)
MEMBERS = "/v2/lbaas/pools/{}/members"


@pytest.fixture(scope="module")
def api(etcd: object) -> Iterator[ServerThread]:
    def with_networks(app: FastAPI) -> None:
        app.state.service.networks = NETWORKS

    server = ServerThread(etcd.endpoint).start(with_networks)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.close()


def _refused(r: httpx.Response, field: str, words: str) -> None:
    assert r.status_code == 400, r.text
    text = r.json()["faultstring"]
    assert text.startswith(field) and words in text, text


def test_a_vxlan_network_from_the_networks_file(api: ServerThread, a: httpx.Client) -> None:
    lb = create_lb(a, vip_subnet_id=FRONT)
    assert lb["vip_segment"] == {"type": "vxlan", "id": 5001}
    pool = create_pool(a, listener_id=create_listener(a, lb["id"], 80)["id"])
    m = create_member(
        a, pool["id"], "172.16.0.5", subnet_id=BACK, mac_address="02:00:00:00:50:05", vtep_address="192.0.2.15"
    )
    assert m["segment"] == {"type": "vxlan", "id": 5002} and m["vtep_address"] == "192.0.2.15"
    # A member without a subnet is on the VIP's segment; it needs its endpoint too.
    plain = create_member(a, pool["id"], "10.9.0.6", mac_address="02:00:00:00:90:06", vtep_address="192.0.2.16")
    assert plain["segment"] is None and plain["vtep_address"] == "192.0.2.16"
    mac = {"mac_address": "02:00:00:00:90:07"}
    _refused(
        a.post(MEMBERS.format(pool["id"]), json={"member": {"address": "10.9.0.7", "protocol_port": 80, **mac}}),
        "member.vtep_address",
        "required for a member on a VXLAN or Geneve segment",
    )
    vtep = {"vtep_address": "192.0.2.17"}
    _refused(
        a.post(MEMBERS.format(pool["id"]), json={"member": {"address": "10.9.0.7", "protocol_port": 80, **vtep}}),
        "member.mac_address",
        "cannot resolve it by ARP",
    )
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None
    by_address = {str(x.address): x for x in doc.pools[0].members}
    assert by_address["172.16.0.5"].segment == Segment(type="vxlan", id=5002)
    assert str(by_address["172.16.0.5"].vtep_address) == "192.0.2.15"
    # The endpoint changes (a VM moved to another hypervisor); it cannot go.
    r = a.put(f"{MEMBERS.format(pool['id'])}/{m['id']}", json={"member": {"vtep_address": "2001:db8::15"}})
    assert r.status_code == 200 and r.json()["member"]["vtep_address"] == "2001:db8::15", r.text
    _refused(
        a.put(f"{MEMBERS.format(pool['id'])}/{m['id']}", json={"member": {"vtep_address": None}}),
        "member.vtep_address",
        "required",
    )
    # The Networking lookups say what the network is.
    net = a.get(f"/v2.0/networks/{FRONT_NET}").json()["network"]
    assert (net["provider:network_type"], net["provider:segmentation_id"]) == ("vxlan", 5001)


def test_explicit_geneve_segments(a: httpx.Client) -> None:
    lb = create_lb(a, vip_segment={"type": "geneve", "id": 7001})
    pool = create_pool(a, loadbalancer_id=lb["id"])
    m = create_member(
        a,
        pool["id"],
        "172.17.0.9",
        segment={"type": "geneve", "id": 7002},
        mac_address="02:00:00:00:70:09",
        vtep_address="192.0.2.9",
    )
    assert m["segment"] == {"type": "geneve", "id": 7002}
    _refused(
        a.post(MEMBERS.format(pool["id"]), json={"member": {"address": "172.16.0.9", "protocol_port": 80,
                                                             "subnet_id": BACK}}),
        "member.segment",
        "is on vxlan 5002 but the VIP is on geneve 7001",
    )  # fmt: skip


def test_mixed_vlan_and_overlay_is_refused_naming_the_field(a: httpx.Client) -> None:
    vxlan_lb = create_lb(a, vip_subnet_id=FRONT)
    pool = create_pool(a, loadbalancer_id=vxlan_lb["id"])
    members = MEMBERS.format(pool["id"])
    # A member from a VLAN subnet, or given a VLAN, under a VXLAN VIP.
    _refused(
        a.post(members, json={"member": {"address": "172.18.0.4", "protocol_port": 80, "subnet_id": VLAN}}),
        "member.segment",
        "is on VLAN 100 but the VIP is on vxlan 5001",
    )
    _refused(
        a.put(members, json={"members": [{"address": "10.1.1.1", "protocol_port": 80, "vtep_address": "192.0.2.1",
                                          "mac_address": "02:00:00:01:01:01"},
                                         {"address": "10.1.1.2", "protocol_port": 80,
                                          "segment": {"type": "vlan", "id": 3}}]}),
        "members[1].segment",
        "adds, strips or converts no encapsulation",
    )  # fmt: skip
    ok = create_member(a, pool["id"], "10.1.1.3", mac_address="02:00:00:01:01:03", vtep_address="192.0.2.3")
    _refused(
        a.put(f"{members}/{ok['id']}", json={"member": {"segment": {"type": "vlan", "id": 0}}}),
        "member.segment",
        "but the VIP is on vxlan 5001",
    )
    # A VXLAN member under a VLAN VIP, in a fully populated create.
    r = a.post(
        "/v2/lbaas/loadbalancers",
        json={
            "loadbalancer": {
                "vip_address": vip(),
                "vip_segment": {"type": "vlan", "id": 100},
                "listeners": [
                    {
                        "protocol": "TCP",
                        "protocol_port": 80,
                        "default_pool": {
                            "name": "web",
                            "protocol": "TCP",
                            "lb_algorithm": "ROUND_ROBIN",
                            "members": [
                                {"address": "172.18.0.2", "protocol_port": 80},
                                {"address": "172.16.0.2", "protocol_port": 80, "subnet_id": BACK},
                            ],
                        },
                    }
                ],
            }
        },
    )
    _refused(
        r, "loadbalancer.listeners[0].default_pool.members[1].segment", "is on vxlan 5002 but the VIP is on VLAN 100"
    )
    # A pool created with members: the same rule.
    r = a.post(
        "/v2/lbaas/pools",
        json={
            "pool": {
                "loadbalancer_id": vxlan_lb["id"],
                "protocol": "TCP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [{"address": "10.2.2.2", "protocol_port": 80, "vtep_address": "192.0.2.2",
                             "mac_address": "02:00:00:02:02:02"},
                            {"address": "172.18.0.2", "protocol_port": 80, "subnet_id": VLAN}],
            }
        },
    )  # fmt: skip
    _refused(r, "pool.members[1].segment", "is on VLAN 100")
    # A tunnel endpoint for a member on a VLAN.
    vlan_lb = create_lb(a, vip_subnet_id=VLAN, vip_address="172.18.0.100")
    vlan_pool = create_pool(a, loadbalancer_id=vlan_lb["id"])
    _refused(
        a.post(
            MEMBERS.format(vlan_pool["id"]),
            json={"member": {"address": "172.18.0.5", "protocol_port": 80, "vtep_address": "192.0.2.5"}},
        ),
        "member.vtep_address",
        "this member is on a VLAN",
    )


def test_a_tree_with_a_vlan_member_under_a_vxlan_vip_is_refused(admin: httpx.Client) -> None:
    lb_id = str(uuid.uuid4())
    body = {
        "loadbalancer": {
            "vip_address": vip(),
            "vip_subnet_id": FRONT,
            "pools": [
                {
                    "id": str(uuid.uuid4()),
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [
                        {
                            "id": str(uuid.uuid4()),
                            "address": "10.3.3.3",
                            "protocol_port": 80,
                            "vtep_address": "192.0.2.3",
                            "mac_address": "02:00:00:03:03:03",
                        }
                    ],
                }
            ],
        }
    }
    r = admin.put(f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree", json=body)
    assert r.status_code == 201, r.text
    body["loadbalancer"]["pools"][0]["members"].append(  # type: ignore[index]
        {"id": str(uuid.uuid4()), "address": "172.18.0.3", "protocol_port": 80, "subnet_id": VLAN}
    )
    _refused(
        admin.put(f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree", json=body),
        "loadbalancer.pools[0].members[1].segment",
        "is on VLAN 100 but the VIP is on vxlan 5001",
    )
