"""How fast a request becomes forwarding: `xdsr bench control-plane`.

A whole local deployment (etcd, API server, operator, three agents on the LB
nodes of a lab fabric) is started. For each run a load balancer is created
in one API call (Octavia's fully populated create: one listener, a pool of
255 members with their MACs given), and the clock stops when every LB node's
attached XDP program forwards a packet for the VIP — asked directly through
BPF_PROG_TEST_RUN on each node's pinned program, polled every millisecond.
The second figure is convergence: 1000 load balancers of 10 members created
at once, until every node forwards every VIP.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import queue
import statistics
import time
from dataclasses import dataclass, field

import httpx

from xdsr.dataplane import libbpf as bpf
from xdsr.lab import FabricSpec, TenantSpec, build_fabric
from xdsr.local.cluster import LocalCluster
from xdsr.local.probes import FRONTEND_VLAN, Probes

BACKEND_VLAN = 100


def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class Series:
    values: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        v = self.values
        return {
            "n": len(v),
            "min": min(v),
            "median": statistics.median(v),
            "p99": _percentile(v, 99),
            "max": max(v),
        }


def lb_body(name: str, vip: str, n_members: int, salt: int) -> dict[str, object]:
    members = []
    for j in range(n_members):
        addr = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.64.0.0")) + salt * 1024 + j + 1)
        members.append(
            {
                "address": str(addr),
                "protocol_port": 80,
                "mac_address": f"02:cb:{(salt >> 8) & 0xFF:02x}:{salt & 0xFF:02x}:{j >> 8:02x}:{j & 0xFF:02x}",
                "segment": {"type": "vlan", "id": BACKEND_VLAN},
            }
        )
    return {
        "loadbalancer": {
            "name": name,
            "vip_address": vip,
            "vip_segment": {"type": "vlan", "id": FRONTEND_VLAN},
            "listeners": [
                {
                    "name": f"{name}-l",
                    "protocol": "TCP",
                    "protocol_port": 80,
                    "default_pool": {
                        "name": f"{name}-p",
                        "protocol": "TCP",
                        "lb_algorithm": "SOURCE_IP_PORT",
                        "members": members,
                    },
                }
            ],
        }
    }


def _wait_all(probes: Probes, vips: list[str], timeout: float, want: bool = True) -> float:
    """Seconds until every node forwards (or no node forwards) every VIP."""
    t0 = time.perf_counter()
    pending = set(vips)
    while pending:
        pending = {v for v in pending if any(f != want for f in probes.forwarding(v))}
        if not pending:
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{len(pending)} VIPs not {'forwarded' if want else 'removed'} after {timeout}s")
        time.sleep(0.001)
    return time.perf_counter() - t0


def _delete_all(client: httpx.Client, ids: list[str]) -> None:
    for lb_id in ids:
        client.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"})


def run(
    runs: int = 20, members: int = 255, bulk: int = 1000, bulk_members: int = 10, workers: int = 8
) -> dict[str, object]:
    spec = FabricSpec(n_lbns=3, prefix="xdsr-cpb", echo_servers=False, tenants=(TenantSpec(name="t", n_backends=1),))
    with build_fabric(spec) as fab:
        fab.lab.install_signal_handlers()
        with LocalCluster.on_fabric(fab, resync=5.0) as cluster:
            client = cluster.client()
            # Wait until the three nodes have formed a group.
            warm = client.post("/v2/lbaas/loadbalancers", json=lb_body("warmup", "198.19.255.1", 1, 4000))
            warm.raise_for_status()
            probes_until = time.monotonic() + 60
            while True:
                try:
                    probes = Probes.of(cluster)
                    _wait_all(probes, ["198.19.255.1"], 60)
                    break
                except (bpf.BpfError, FileNotFoundError, TimeoutError):
                    if time.monotonic() > probes_until:
                        raise
                    time.sleep(0.1)
            _delete_all(client, [warm.json()["loadbalancer"]["id"]])

            single = Series()
            api = Series()
            active = Series()
            for i in range(runs):
                vip = f"198.19.0.{i + 1}"
                body = lb_body(f"bench{i}", vip, members, i)
                t0 = time.perf_counter()
                resp = client.post("/v2/lbaas/loadbalancers", json=body)
                api.values.append(time.perf_counter() - t0)
                resp.raise_for_status()
                lb_id = resp.json()["loadbalancer"]["id"]
                _wait_all(probes, [vip], 30)
                single.values.append(time.perf_counter() - t0)
                while (
                    client.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["provisioning_status"]
                    != "ACTIVE"
                ):
                    time.sleep(0.001)
                active.values.append(time.perf_counter() - t0)
                _delete_all(client, [lb_id])
                _wait_all(probes, [vip], 30, want=False)

            vips = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.20.0.1")) + i)) for i in range(bulk)]
            bodies = [lb_body(f"bulk{i}", vip, bulk_members, 100 + i) for i, vip in enumerate(vips)]

            # One HTTP client per worker, made before the clock starts: making
            # an httpx client costs milliseconds of CPU (its TLS context), which
            # the benchmark would otherwise take from the system it measures.
            clients: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
            for _ in range(workers):
                clients.put(cluster.client())

            def create(body: dict[str, object]) -> str:
                c = clients.get()
                try:
                    r = c.post("/v2/lbaas/loadbalancers", json=body)
                    r.raise_for_status()
                    return str(r.json()["loadbalancer"]["id"])
                finally:
                    clients.put(c)

            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                ids = list(pool.map(create, bodies))
            created = time.perf_counter() - t0
            while not clients.empty():
                clients.get().close()
            _wait_all(probes, vips, 600)
            converged = time.perf_counter() - t0
            _delete_all(client, ids)
            probes.close()
            return {
                "single": {
                    "members": members,
                    "until_all_nodes_forward_s": single.summary(),
                    "api_call_s": api.summary(),
                    "until_provisioning_active_s": active.summary(),
                },
                "bulk": {
                    "load_balancers": bulk,
                    "members_each": bulk_members,
                    "api_calls_done_s": created,
                    "until_all_nodes_forward_all_s": converged,
                    "client_workers": workers,
                },
            }
