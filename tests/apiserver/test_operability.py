"""What an operator and the stock OpenStack clients need beyond the load
balancers themselves: the Networking lookups the CLI makes (from the
networks file), Octavia's lists that xdsr has nothing in, deleting a
listener's default pool as Octavia does, a request id on every answer,
/metrics by route template (promtool-clean) and /healthz."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.apiserver.helpers import (
    TOKEN_A,
    TOKEN_ADMIN,
    ServerThread,
    client,
    create_lb,
    create_listener,
    create_member,
    create_pool,
    stored,
)
from xdsr.apiserver.networks import Networks, Subnet
from xdsr.local.etcd import EtcdServer
from xdsr.model.agent import Segment

SUBNET = str(uuid.uuid4())
NETWORK = str(uuid.uuid4())
OTHER_SUBNET = str(uuid.uuid4())
NETWORKS = Networks(
    [
        Subnet(id=SUBNET, name="front", network_id=NETWORK, cidr="203.0.113.0/24", segment=Segment(type="vlan", id=10)),
        Subnet(id=OTHER_SUBNET, cidr="10.1.0.0/24", segment=Segment(type="vlan", id=100)),
    ]
)
REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def api(etcd: EtcdServer) -> Iterator[ServerThread]:
    def with_networks(app: FastAPI) -> None:
        app.state.service.networks = NETWORKS

    server = ServerThread(etcd.endpoint).start(with_networks)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def anonymous(api: ServerThread) -> Iterator[httpx.Client]:
    with client(api, None) as c:
        yield c


# --- the Networking API's lookups -------------------------------------------------


def test_subnet_lookups_as_the_openstack_client_makes_them(a: httpx.Client, anonymous: httpx.Client) -> None:
    r = a.get(f"/v2.0/subnets/{SUBNET}")
    assert r.status_code == 200, r.text
    sn = r.json()["subnet"]
    assert (sn["id"], sn["name"], sn["network_id"], sn["cidr"], sn["ip_version"]) == (
        SUBNET,
        "front",
        NETWORK,
        "203.0.113.0/24",
        4,
    )
    assert [s["id"] for s in a.get("/v2.0/subnets", params={"id": SUBNET}).json()["subnets"]] == [SUBNET]
    assert [s["id"] for s in a.get("/v2.0/subnets", params={"name": "front"}).json()["subnets"]] == [SUBNET]
    assert a.get("/v2.0/subnets", params={"name": "nope"}).json()["subnets"] == []
    assert {s["id"] for s in a.get("/v2.0/subnets").json()["subnets"]} == {SUBNET, OTHER_SUBNET}
    assert a.get("/v2.0/subnets", params={"id": SUBNET, "fields": "cidr"}).json()["subnets"] == [
        {"cidr": "203.0.113.0/24"}
    ]
    missing = a.get(f"/v2.0/subnets/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert anonymous.get("/v2.0/subnets").status_code == 401


def test_network_lookups_name_the_segment(a: httpx.Client) -> None:
    net = a.get(f"/v2.0/networks/{NETWORK}").json()["network"]
    assert net["subnets"] == [SUBNET]
    assert (net["provider:network_type"], net["provider:segmentation_id"]) == ("vlan", 10)
    assert [n["id"] for n in a.get("/v2.0/networks", params={"id": NETWORK}).json()["networks"]] == [NETWORK]
    assert a.get(f"/v2.0/networks/{uuid.uuid4()}").status_code == 404


def test_networking_is_a_lookup_not_a_neutron(a: httpx.Client) -> None:
    r = a.post("/v2.0/subnets", json={"subnet": {"cidr": "10.9.0.0/24"}})
    assert r.status_code == 400
    assert r.json()["faultstring"].startswith("subnets: ")
    assert a.delete(f"/v2.0/networks/{NETWORK}").status_code == 400


# --- Octavia's lists xdsr has nothing in --------------------------------------------

EMPTY_LISTS = [
    ("/v2/lbaas/flavors", "flavors", False),
    ("/v2/lbaas/availabilityzones", "availability_zones", False),
    ("/v2/lbaas/l7policies", "l7policies", False),
    ("/v2.0/lbaas/flavorprofiles", "flavorprofiles", True),
    ("/v2.0/lbaas/availabilityzoneprofiles", "availability_zone_profiles", True),
    ("/v2/octavia/amphorae", "amphorae", True),
    ("/v2.0/octavia/amphorae", "amphorae", True),
]


@pytest.mark.parametrize(("path", "key", "admin_only"), EMPTY_LISTS)
def test_octavias_lists_are_empty_not_missing(
    api: ServerThread, anonymous: httpx.Client, path: str, key: str, admin_only: bool
) -> None:
    with client(api, TOKEN_ADMIN) as admin, client(api, TOKEN_A) as a:
        r = admin.get(path)
        assert r.status_code == 200, r.text
        assert r.json()[key] == []
        assert a.get(path).status_code == (403 if admin_only else 200)
    assert anonymous.get(path).status_code == 401


@pytest.mark.parametrize("what", ["flavor_capabilities", "availability_zone_capabilities"])
def test_provider_capabilities(a: httpx.Client, anonymous: httpx.Client, what: str) -> None:
    r = a.get(f"/v2/lbaas/providers/xdsr/{what}")
    assert r.status_code == 200, r.text
    assert r.json() == {what: []}
    assert a.get(f"/v2/lbaas/providers/amphora/{what}").status_code == 400
    assert anonymous.get(f"/v2/lbaas/providers/xdsr/{what}").status_code == 401


def test_l7policies_list_but_cannot_be_created(a: httpx.Client) -> None:
    assert a.get(f"/v2/lbaas/l7policies/{uuid.uuid4()}").status_code == 404
    r = a.post("/v2/lbaas/l7policies", json={"l7policy": {"listener_id": str(uuid.uuid4()), "action": "REJECT"}})
    assert r.status_code == 400
    assert r.json()["faultstring"].startswith("l7policies: ")


# --- deleting a listener's default pool, as Octavia --------------------------------


def test_deleting_a_listeners_default_pool_detaches_it(api: ServerThread, a: httpx.Client) -> None:
    lb = create_lb(a)
    li = create_listener(a, lb["id"], 80)
    pool = create_pool(a, listener_id=li["id"])
    create_member(a, pool["id"], "192.0.2.61", 80)
    generation = stored(api.endpoint, lb["id"]).generation  # type: ignore[union-attr]

    r = a.delete(f"/v2/lbaas/pools/{pool['id']}")
    assert r.status_code == 204, r.text
    after = a.get(f"/v2/lbaas/listeners/{li['id']}").json()["listener"]
    assert after["default_pool_id"] is None
    assert a.get(f"/v2/lbaas/pools/{pool['id']}").status_code == 404
    doc = stored(api.endpoint, lb["id"])
    assert doc is not None and doc.generation > generation
    assert doc.pools == []
    # The listener changed with it: the LB nodes are told (new generation on it).
    assert doc.listeners[0].default_pool_id is None
    assert doc.listeners[0].generation == doc.generation
    # Then the listener goes too, as Terraform destroys them.
    assert a.delete(f"/v2/lbaas/listeners/{li['id']}").status_code == 204


# --- request ids, metrics, health ---------------------------------------------------


def test_every_answer_has_a_request_id(a: httpx.Client, anonymous: httpx.Client) -> None:
    answers = [
        a.get("/v2/lbaas/loadbalancers"),
        a.get(f"/v2/lbaas/loadbalancers/{uuid.uuid4()}"),  # 404
        a.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {}}),  # 400
        anonymous.get("/v2/lbaas/pools"),  # 401
        anonymous.get("/"),
        anonymous.get("/no/such/path"),
    ]
    ids = [r.headers.get("x-openstack-request-id", "") for r in answers]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_metrics_by_route_template(api: ServerThread, a: httpx.Client, anonymous: httpx.Client) -> None:
    lb = create_lb(a)
    for _ in range(3):
        assert a.get(f"/v2/lbaas/loadbalancers/{lb['id']}").status_code == 200
    assert a.get(f"/v2/lbaas/loadbalancers/{uuid.uuid4()}").status_code == 404
    text = anonymous.get("/metrics").text  # no token, as Prometheus scrapes
    assert lb["id"] not in text, "raw paths must not become labels"
    route = 'route="/v2/lbaas/loadbalancers/{loadbalancer_id}"'
    ok = [ln for ln in text.splitlines() if ln.startswith("xdsr_api_requests_total{") and route in ln]
    assert any('status="200"' in ln and 'method="GET"' in ln for ln in ok), ok
    assert any('status="404"' in ln for ln in ok), ok
    for name in ("xdsr_api_request_duration_seconds_bucket", "xdsr_store_request_duration_seconds_bucket"):
        assert name in text
    assert "process_cpu_seconds_total" in text


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (Debian package prometheus)")
def test_metrics_pass_promtool(a: httpx.Client, anonymous: httpx.Client) -> None:
    a.get("/v2/lbaas/loadbalancers")
    text = anonymous.get("/metrics").text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_health(anonymous: httpx.Client) -> None:
    r = anonymous.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
