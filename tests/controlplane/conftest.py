"""A whole deployment in network namespaces: a lab fabric with three LB
nodes, and etcd, the API server, the operator and one agent per node as
separate processes (xdsr.local.cluster.LocalCluster)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import IS_ROOT
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.local.cluster import LocalCluster

VIP = "203.0.113.10"


@dataclass
class Env:
    fab: Fabric
    cluster: LocalCluster

    def api(self, project: str | None = "a") -> httpx.Client:
        return self.cluster.client(project)

    def agent_state(self, name: str) -> dict[str, Any]:
        r = httpx.get(
            self.cluster.agent_urls[name] + "/v1/state",
            headers={"Authorization": f"Bearer {self.cluster.tokens.agents}"},
            timeout=5,
        )
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait_lb(self, lb_id: str, status: str = "ACTIVE", timeout: float = 30.0, project: str = "a") -> dict[str, Any]:
        """Until the load balancer's provisioning_status is status."""
        with self.api(project) as c:

            def check() -> dict[str, Any] | None:
                lb = c.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
                return lb if lb["provisioning_status"] == status else None

            try:
                return wait_until(check, timeout=timeout, interval=0.05, what=f"load balancer {status}")
            except TimeoutError:
                raise AssertionError(f"{lb_id} not {status}:\n{self.cluster.logs()}") from None


def make_env(
    prefix: str, tenants: tuple[TenantSpec, ...], projects: tuple[str, ...], health_sources: bool = False
) -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root: network namespaces and XDP")
    spec = FabricSpec(n_lbns=3, prefix=prefix, tenants=tenants)
    with (
        build_fabric(spec) as fab,
        LocalCluster.on_fabric(fab, health_checks=health_sources, projects=projects, resync=2.0) as cluster,
    ):
        yield Env(fab, cluster)


def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    return wait_until(pred, timeout=timeout, interval=0.05, what=what)


def now() -> float:
    return time.monotonic()
