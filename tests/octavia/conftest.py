"""The real Octavia API and driver agent with xdsr as their provider, on a
whole local xdsr deployment in network namespaces: a lab fabric with three
LB nodes, and etcd, the xdsr API server, the operator and the agents as
processes (xdsr.local.cluster.LocalCluster). Started once for the folder.

Without Neutron, Octavia's subnets mean nothing to xdsr by themselves: the
xdsr API server maps them to VLANs with its networks file, as it would the
ids Neutron gave them (the VIP's subnet → the frontend VLAN, the members'
subnet → the backend VLAN), and the LB nodes resolve the members' MACs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import IS_ROOT
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.local.cluster import LocalCluster
from xdsr.local.octavia import LocalOctavia

VIP = "203.0.113.10"
FRONTEND_VID = 10
BACKEND_VID = 100
FRONTEND_SUBNET = str(uuid.uuid4())
BACKEND_SUBNET = str(uuid.uuid4())
PROJECT = "tenant-a"
# How long the agent retries while the xdsr API server is down before ERROR (test_faults).
APPLY_TIMEOUT = 3.0

HAVE_OCTAVIA = importlib.util.find_spec("octavia") is not None and importlib.util.find_spec("octavia_lib") is not None


def skip_without_octavia() -> None:
    if not HAVE_OCTAVIA:
        pytest.skip("octavia is not installed: pip install -e '.[test,octavia]' (these tests run the real Octavia API)")


@dataclass
class Env:
    fab: Fabric
    cluster: LocalCluster
    octavia: LocalOctavia

    def api(self) -> httpx.Client:
        """Octavia's API, as the tenant."""
        return self.octavia.session(PROJECT)

    def xdsr(self) -> httpx.Client:
        """xdsr's API server, as admin (what the provider agent sees)."""
        return self.cluster.client()

    def logs(self) -> str:
        return f"{self.octavia.logs()}\n{self.cluster.logs()}"

    def wait_lb(self, lb_id: str, status: str = "ACTIVE", timeout: float = 30.0) -> dict[str, Any]:
        """Until Octavia shows the load balancer with this provisioning_status."""
        with self.api() as c:

            def check() -> dict[str, Any] | None:
                lb = c.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
                return lb if lb["provisioning_status"] == status else None

            try:
                return wait_until(check, timeout=timeout, interval=0.05, what=f"load balancer {status}")
            except TimeoutError:
                raise AssertionError(f"{lb_id} not {status} in Octavia:\n{self.logs()}") from None

    def wait_gone(self, path: str, timeout: float = 30.0) -> None:
        """Until Octavia answers 404 for path (or shows it DELETED)."""
        with self.api() as c:

            def check() -> bool:
                r = c.get(path)
                if r.status_code == 404:
                    return True
                body = next(iter(r.json().values()))
                return bool(body.get("provisioning_status") == "DELETED")

            try:
                wait_until(check, timeout=timeout, interval=0.05, what=f"{path} gone")
            except TimeoutError:
                raise AssertionError(f"{path} still there:\n{self.logs()}") from None

    def tree(self, lb_id: str) -> dict[str, Any]:
        with self.api() as c:
            return c.get(f"/v2/lbaas/loadbalancers/{lb_id}/status").json()["statuses"]["loadbalancer"]  # type: ignore[no-any-return]

    def xdsr_ids(self) -> set[str]:
        """Every object id xdsr holds, of any kind."""
        with self.xdsr() as c:
            st = c.get("/v2/lbaas/xdsr/statuses").json()["statuses"]
        ids = set()
        for lb in st:
            ids.add(lb["id"])
            for key in ("listeners", "pools", "members", "healthmonitors"):
                ids.update(e["id"] for e in lb[key])
        return ids


def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    return wait_until(pred, timeout=timeout, interval=0.05, what=what)


@pytest.fixture(scope="package")
def env() -> Iterator[Env]:
    skip_without_octavia()
    if not IS_ROOT:
        pytest.skip("needs root: network namespaces and XDP for the LB nodes")
    tenant = TenantSpec(name="a", n_backends=4, vip=VIP, frontend_vid=FRONTEND_VID, backend_vid=BACKEND_VID)
    subnets: list[dict[str, object]] = [
        {"id": FRONTEND_SUBNET, "cidr": "203.0.113.0/24", "segment": {"type": "vlan", "id": FRONTEND_VID}},
        {"id": BACKEND_SUBNET, "cidr": "10.1.0.0/24", "segment": {"type": "vlan", "id": BACKEND_VID}},
    ]
    with build_fabric(FabricSpec(n_lbns=3, prefix="xoct", tenants=(tenant,))) as fab:
        cluster = LocalCluster.on_fabric(fab, projects=(PROJECT,), subnets=subnets, resync=2.0)
        octavia = LocalOctavia(cluster.api_url, cluster.tokens.admin, apply_timeout=APPLY_TIMEOUT)
        with contextlib.ExitStack() as stack, ThreadPoolExecutor(1) as pool:
            stack.callback(cluster.close)
            stack.callback(octavia.close)  # first: it talks to the cluster
            # Octavia takes seconds to import and start: meanwhile the cluster starts.
            starting = pool.submit(octavia.start)
            cluster.start()
            starting.result()
            yield Env(fab, cluster, octavia)
