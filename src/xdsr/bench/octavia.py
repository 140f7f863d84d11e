"""How long from Octavia's create call until the LB nodes forward — the
paper's figure (section IV: "about 3 s on average, most of it in OpenStack").

For each run, one fully populated create through Octavia's REST API (a load
balancer, a TCP listener on port 80, its pool and members given by address
and subnet — no MACs: the LB nodes resolve them, as without Neutron); the
clock stops when every LB node's attached XDP program forwards a packet for
the VIP (BPF_PROG_TEST_RUN on each node's program, xdsr.local.probes.
Probes), and when Octavia shows the load balancer ACTIVE. Then a cascade
delete, until no node forwards the VIP and Octavia has forgotten it.

    python -m xdsr.bench.octavia [runs]     # as root: builds its own fabric, cluster and Octavia
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import httpx

from xdsr.bench.controlplane import Series
from xdsr.local.probes import FRONTEND_VLAN, Probes


def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.001)


def measure(
    octavia_api: httpx.Client,
    probes: Probes,
    vip: str,
    vip_subnet: str,
    members: list[str],
    member_subnet: str,
    runs: int = 5,
) -> dict[str, Any]:
    """Seconds from the create call to: its answer, every LB node forwarding,
    Octavia showing ACTIVE."""
    api, forwarding, active = Series(), Series(), Series()
    for i in range(runs):
        body = {
            "loadbalancer": {
                "name": f"bench-{i}",
                "vip_address": vip,
                "vip_subnet_id": vip_subnet,
                "listeners": [
                    {
                        "name": f"bench-{i}-80",
                        "protocol": "TCP",
                        "protocol_port": 80,
                        "default_pool": {
                            "name": f"bench-{i}-pool",
                            "protocol": "TCP",
                            "lb_algorithm": "SOURCE_IP_PORT",
                            "members": [
                                {"address": m, "protocol_port": 80, "subnet_id": member_subnet} for m in members
                            ],
                        },
                    }
                ],
            }
        }
        t0 = time.perf_counter()
        r = octavia_api.post("/v2/lbaas/loadbalancers", json=body)
        api.values.append(time.perf_counter() - t0)
        r.raise_for_status()
        lb_id = r.json()["loadbalancer"]["id"]
        _until(lambda: all(probes.forwarding(vip)), 60, "every LB node forwarding")
        forwarding.values.append(time.perf_counter() - t0)

        def is_active(lb_id: str = lb_id) -> bool:
            got = octavia_api.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
            return bool(got["provisioning_status"] == "ACTIVE")

        _until(is_active, 60, "Octavia ACTIVE")
        active.values.append(time.perf_counter() - t0)
        octavia_api.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"}).raise_for_status()
        _until(lambda: not any(probes.forwarding(vip)), 60, "no LB node forwarding")
        _until(
            lambda lb_id=lb_id: octavia_api.get(f"/v2/lbaas/loadbalancers/{lb_id}").status_code == 404,
            60,
            "Octavia forgot it",
        )
    return {
        "runs": runs,
        "members": len(members),
        "create_call_s": api.summary(),
        "until_all_lb_nodes_forward_s": forwarding.summary(),
        "until_octavia_active_s": active.summary(),
    }


def main(runs: int = 10) -> dict[str, Any]:
    from xdsr.lab import FabricSpec, TenantSpec, build_fabric
    from xdsr.local.cluster import LocalCluster
    from xdsr.local.octavia import LocalOctavia

    vip, frontend, backend = "203.0.113.10", str(uuid.uuid4()), str(uuid.uuid4())
    tenant = TenantSpec(name="a", n_backends=3, vip=vip, frontend_vid=FRONTEND_VLAN, backend_vid=100)
    subnets: list[dict[str, object]] = [
        {"id": frontend, "segment": {"type": "vlan", "id": FRONTEND_VLAN}},
        {"id": backend, "segment": {"type": "vlan", "id": 100}},
    ]
    with build_fabric(FabricSpec(n_lbns=3, prefix="xocb", tenants=(tenant,))) as fab:
        fab.lab.install_signal_handlers()
        with (
            LocalCluster.on_fabric(fab, subnets=subnets) as cluster,
            LocalOctavia(cluster.api_url, cluster.tokens.admin) as octavia,
            octavia.session("bench") as api,
        ):
            members = [b.ip for b in fab.tenant("a").backends]
            # Warm up (and let the agents attach, so that probes find their programs).
            r = api.post(
                "/v2/lbaas/loadbalancers",
                json={"loadbalancer": {"vip_address": "203.0.113.99", "vip_subnet_id": frontend}},
            )
            r.raise_for_status()
            warm = r.json()["loadbalancer"]["id"]
            _until(
                lambda: (
                    api.get(f"/v2/lbaas/loadbalancers/{warm}").json()["loadbalancer"]["provisioning_status"] == "ACTIVE"
                ),
                60,
                "warm-up ACTIVE",
            )
            api.delete(f"/v2/lbaas/loadbalancers/{warm}").raise_for_status()
            probes = Probes.of(cluster)
            try:
                return measure(api, probes, vip, frontend, members, backend, runs)
            finally:
                probes.close()


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
