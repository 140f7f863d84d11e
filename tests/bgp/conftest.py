"""BGP with real daemons: a lab fabric whose tenant router runs BIRD 2, and a
whole deployment (etcd, API server, operator, three agents each owning a
BIRD) as processes (xdsr.local.cluster.LocalCluster)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import IS_ROOT
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.lab.router import BgpRouters, BgpSpec
from xdsr.local.cluster import LocalCluster

VIP = "203.0.113.20"
VIP6 = "fd00:203::20"


@dataclass
class Env:
    fab: Fabric
    routers: BgpRouters
    cluster: LocalCluster

    def api(self) -> httpx.Client:
        return self.cluster.client("a")

    def agent(self, name: str, method: str, path: str) -> dict[str, Any]:
        r = httpx.request(
            method,
            self.cluster.agent_urls[name] + path,
            headers={"Authorization": f"Bearer {self.cluster.tokens.agents}"},
            timeout=5,
        )
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def bgp(self, name: str) -> dict[str, Any]:
        return self.agent(name, "GET", "/v1/bgp")

    def operating_status(self, lb_id: str) -> str:
        with self.api() as c:
            r = c.get(f"/v2/lbaas/loadbalancers/{lb_id}")
            r.raise_for_status()
            return str(r.json()["loadbalancer"]["operating_status"])

    def wait_operating(self, lb_id: str, want: str) -> None:
        until(lambda: self.operating_status(lb_id) == want, what=f"load balancer {want}")

    def lbns(self) -> dict[str, dict[str, Any]]:
        """The API's admin view of the LB nodes (GET /v2/lbaas/xdsr/lbns)."""
        with self.cluster.client() as c:
            r = c.get("/v2/lbaas/xdsr/lbns")
            r.raise_for_status()
            return {n["name"]: n for n in r.json()["lbns"]}

    def agent_status(self, name: str, *extra: str) -> str:
        """`xdsr agent status` against the node's agent."""
        return self.agent_cli("status", name, *extra)

    def agent_cli(self, command: str, name: str, *extra: str) -> str:
        """`xdsr agent status|drain|undrain` against the node's agent."""
        cmd = [sys.executable, "-m", "xdsr.cli", "agent", command, "--endpoint", self.cluster.agent_urls[name]]
        cmd += ["--token-file", str(self.cluster.workdir / "agent-token"), "--insecure-http", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
        assert r.returncode == 0, r.stderr
        return r.stdout

    def route(self, ipv6: bool = False) -> list[int]:
        """LB node indexes in the router's kernel route to the VIP."""
        return self.routers.lbns_in_route("a", ipv6=ipv6)

    def wait_route(self, want: list[int], timeout: float = 20.0, ipv6: bool = False) -> None:
        try:
            wait_until(lambda: self.route(ipv6) == want, timeout=timeout, interval=0.01, what=f"route via {want}")
        except TimeoutError:
            raise AssertionError(
                f"route via {self.route(ipv6)}, wanted {want}; sessions {self.routers.sessions('a')}\n"
                f"router's BIRD: {self.routers.show_route('a', f'{VIP6}/128' if ipv6 else f'{VIP}/32')}\n"
                f"{self.cluster.logs()}"
            ) from None

    def kill_agent(self, name: str) -> None:
        """SIGKILL the agent process alone (not its group): BIRD must die with it by itself."""
        agent = self.cluster.agents[name]
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)

    def create_lb(self, ipv6: bool = False, name: str = "web") -> str:
        t = self.fab.tenant("a")
        body = {
            "loadbalancer": {
                "name": name,
                "vip_address": VIP6 if ipv6 else VIP,
                "vip_segment": {"type": "vlan", "id": t.frontend_vid},
                "listeners": [
                    {
                        "name": f"{name}-tcp",
                        "protocol": "TCP",
                        "protocol_port": t.tcp_port,
                        "default_pool": {
                            "name": f"{name}-pool",
                            "protocol": "TCP",
                            "lb_algorithm": "SOURCE_IP_PORT",
                            "members": [
                                {
                                    "address": b.ip6 if ipv6 else b.ip,
                                    "protocol_port": t.tcp_port,
                                    "segment": {"type": "vlan", "id": b.vid},
                                }
                                for b in t.backends
                            ],
                        },
                    }
                ],
            }
        }
        with self.api() as c:
            r = c.post("/v2/lbaas/loadbalancers", json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["loadbalancer"]["id"])

    def delete_lb(self, lb_id: str) -> None:
        with self.api() as c:
            r = c.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"})
            assert r.status_code == 204, r.text
            # PENDING_DELETE still holds its VIP (as in Octavia): the next
            # test may take the VIP only once the load balancer is gone.
            gone = lambda: c.get(f"/v2/lbaas/loadbalancers/{lb_id}").status_code == 404  # noqa: E731
            until(gone, what=f"load balancer {lb_id} gone")


def make_env(prefix: str, spec: BgpSpec | None = None, **overrides: Any) -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root: network namespaces, XDP and BIRD")
    if shutil.which("bird") is None:
        pytest.skip("BIRD 2 is not installed (apt-get install bird2)")
    tenant = TenantSpec(name="a", n_backends=3, vip=VIP, vip6=VIP6, frontend_vid=10, backend_vid=100)
    fspec = FabricSpec(n_lbns=3, prefix=prefix, tenants=(tenant,), ipv6=True)
    with build_fabric(fspec) as fab, BgpRouters.start(fab, spec) as routers:
        args = routers.agent_args(**overrides)
        with LocalCluster.on_fabric(fab, health_checks=False, projects=("a",), agent_args=args) as cluster:
            env = Env(fab, routers, cluster)
            wait_until(lambda: routers.established("a") == ["lbn0", "lbn1", "lbn2"], timeout=20, what="sessions")
            yield env


def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    return wait_until(pred, timeout=timeout, interval=0.02, what=what)
