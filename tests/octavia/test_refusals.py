"""What L2 direct server return cannot do is refused by the driver before
anything happens: Octavia answers 501 with our reason, rolls the request
back, and neither Octavia nor xdsr holds anything of it afterwards. Flavor
and availability-zone metadata are validated the same way, and a flavor's
LB node group reaches xdsr's placement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import needs_root
from tests.octavia.conftest import BACKEND_SUBNET, FRONTEND_SUBNET, Env

pytestmark = needs_root

VIP = "203.0.113.20"  # no traffic here: any address of the frontend subnet


def created(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201, 202), r.text
    return next(iter(r.json().values()))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def lb(env: Env) -> Iterator[dict[str, Any]]:
    """An ACTIVE load balancer with a TCP listener on port 80 and its pool."""
    with env.api() as c:
        body = {
            "name": "refusals",
            "vip_address": VIP,
            "vip_subnet_id": FRONTEND_SUBNET,
            "listeners": [
                {
                    "name": "tcp-80",
                    "protocol": "TCP",
                    "protocol_port": 80,
                    "default_pool": {"name": "p80", "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT"},
                }
            ],
        }
        got = created(c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": body}))
        env.wait_lb(got["id"])
        yield got
        c.delete(f"/v2/lbaas/loadbalancers/{got['id']}", params={"cascade": "true"})
        env.wait_gone(f"/v2/lbaas/loadbalancers/{got['id']}")


def refused(r: httpx.Response, *words: str) -> str:
    """Octavia's answer to a request the driver refused: 501, with our reason."""
    assert r.status_code == 501, r.text
    text = r.json()["faultstring"]
    assert "xdsr" in text, text
    for w in words:
        assert w in text, text
    return str(text)


def snapshot(env: Env, c: httpx.Client, lb_id: str) -> tuple[Any, ...]:
    """Everything Octavia and xdsr hold of the load balancer."""
    tree = c.get(f"/v2/lbaas/loadbalancers/{lb_id}/status").json()
    lb = c.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
    return (json.dumps(tree, sort_keys=True), lb["provisioning_status"], sorted(env.xdsr_ids()))


def test_unsupported_requests_are_refused_and_leave_nothing(env: Env, lb: dict[str, Any]) -> None:
    lb_id = lb["id"]
    (listener,) = lb["listeners"]
    pool_id = lb["pools"][0]["id"]
    with env.api() as c:
        before = snapshot(env, c, lb_id)
        cases = [
            (
                (
                    "/v2/lbaas/listeners",
                    {"listener": {"loadbalancer_id": lb_id, "protocol": "HTTP", "protocol_port": 8080}},
                ),
                ("HTTP is not supported", "as a TCP listener"),
            ),
            (
                (
                    "/v2/lbaas/listeners",
                    {"listener": {"loadbalancer_id": lb_id, "protocol": "HTTPS", "protocol_port": 443}},
                ),
                ("HTTPS is not supported", "pass TLS through"),
            ),
            (
                (
                    "/v2/lbaas/pools",
                    {"pool": {"loadbalancer_id": lb_id, "protocol": "TCP", "lb_algorithm": "LEAST_CONNECTIONS"}},
                ),
                ("LEAST_CONNECTIONS is not supported", "per-connection state"),
            ),
            (
                (
                    "/v2/lbaas/pools",
                    {
                        "pool": {
                            "loadbalancer_id": lb_id,
                            "protocol": "TCP",
                            "lb_algorithm": "ROUND_ROBIN",
                            "session_persistence": {"type": "SOURCE_IP"},
                        }
                    },
                ),
                ("session persistence is not supported",),
            ),
            (
                (
                    f"/v2/lbaas/pools/{pool_id}/members",
                    {"member": {"address": "10.1.0.11", "protocol_port": 8080, "subnet_id": BACKEND_SUBNET}},
                ),
                ("8080 differs from the listener's protocol_port 80", "does not translate ports"),
            ),
            (
                ("/v2/lbaas/l7policies", {"l7policy": {"listener_id": listener["id"], "action": "REJECT"}}),
                ("L7 policies are not supported",),
            ),
        ]
        for (path, body), words in cases:
            refused(c.post(path, json=body), *words)
            # Rolled back in Octavia (the load balancer is ACTIVE again, not
            # locked), nothing reached xdsr.
            assert snapshot(env, c, lb_id) == before, f"{path} left something behind"

        # A fully populated create with an HTTP listener: no load balancer at all.
        body = {
            "vip_address": "203.0.113.21",
            "vip_subnet_id": FRONTEND_SUBNET,
            "listeners": [{"protocol": "HTTP", "protocol_port": 80}],
        }
        refused(c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": body}), "HTTP is not supported")
        names = {x["vip_address"] for x in c.get("/v2/lbaas/loadbalancers").json()["loadbalancers"]}
        assert "203.0.113.21" not in names
        assert snapshot(env, c, lb_id) == before


def test_flavor_and_availability_zone_metadata(env: Env) -> None:
    with env.api() as c:
        # Octavia asks the driver to validate metadata when a profile is created.
        r = c.post(
            "/v2/lbaas/flavorprofiles",
            json={"flavorprofile": {"name": "ha", "provider_name": "xdsr", "flavor_data": '{"topology": "SINGLE"}'}},
        )
        refused(r, "topology", "xdsr knows only: lbn_group")
        r = c.post(
            "/v2/lbaas/flavorprofiles",
            json={"flavorprofile": {"name": "bad", "provider_name": "xdsr", "flavor_data": '{"lbn_group": "G 1"}'}},
        )
        refused(r, "not an xdsr LB node group name")
        r = c.post(
            "/v2/lbaas/availabilityzoneprofiles",
            json={
                "availability_zone_profile": {
                    "name": "az",
                    "provider_name": "xdsr",
                    "availability_zone_data": '{"compute_zone": "nova"}',
                }
            },
        )
        refused(r, "compute_zone", "xdsr knows only: lbn_group")
        supported = c.get("/v2/lbaas/providers/xdsr/flavor_capabilities").json()["flavor_capabilities"]
        assert [x["name"] for x in supported] == ["lbn_group"]

        # A flavor naming the cluster's group: the load balancer lands there.
        profile = created(
            c.post(
                "/v2/lbaas/flavorprofiles",
                json={"flavorprofile": {"name": "g1", "provider_name": "xdsr", "flavor_data": '{"lbn_group": "g1"}'}},
            )
        )
        flavor = created(
            c.post("/v2/lbaas/flavors", json={"flavor": {"name": "g1", "flavor_profile_id": profile["id"]}})
        )
        lb = created(
            c.post(
                "/v2/lbaas/loadbalancers",
                json={
                    "loadbalancer": {
                        "vip_address": "203.0.113.22",
                        "vip_subnet_id": FRONTEND_SUBNET,
                        "flavor_id": flavor["id"],
                    }
                },
            )
        )
        env.wait_lb(lb["id"])
        with env.xdsr() as x:
            assert x.get(f"/v2/lbaas/loadbalancers/{lb['id']}").json()["loadbalancer"]["lbn_group"] == "g1"

        # A group no LB node is in: the operator cannot place it, Octavia shows ERROR.
        profile2 = created(
            c.post(
                "/v2/lbaas/flavorprofiles",
                json={
                    "flavorprofile": {
                        "name": "none",
                        "provider_name": "xdsr",
                        "flavor_data": '{"lbn_group": "nowhere"}',
                    }
                },
            )
        )
        flavor2 = created(
            c.post("/v2/lbaas/flavors", json={"flavor": {"name": "nowhere", "flavor_profile_id": profile2["id"]}})
        )
        lb2 = created(
            c.post(
                "/v2/lbaas/loadbalancers",
                json={
                    "loadbalancer": {
                        "vip_address": "203.0.113.23",
                        "vip_subnet_id": FRONTEND_SUBNET,
                        "flavor_id": flavor2["id"],
                    }
                },
            )
        )
        env.wait_lb(lb2["id"], "ERROR")
        assert "LB node group 'nowhere' cannot take it" in env.octavia.logs(100_000)

        for x in (lb, lb2):
            assert c.delete(f"/v2/lbaas/loadbalancers/{x['id']}").status_code == 204
        for x in (lb, lb2):
            env.wait_gone(f"/v2/lbaas/loadbalancers/{x['id']}")
