"""`xdsr bench bgp`: how fast the router's ECMP route follows the LB nodes.

A lab fabric with one tenant router running BIRD, three LB nodes each with an
agent owning its BIRD, the whole control plane as processes
(LocalCluster). Measured, with the router's kernel FIB read over netlink
every millisecond:

* announce: API create of a load balancer -> its VIP route in the router's
  FIB has all three next hops (create, wait, delete; `runs` times);
* failover: a fault -> the router's FIB no longer has that node's next hop,
  while a client keeps `conns` TCP connections talking through the VIP;
  connections lost are those the client saw break. Faults: `sigkill` (the
  agent alone gets SIGKILL; its BIRD dies with it) and `link` (the node's
  switch port goes down: a host that goes silent), each with BFD on and off
  (then the BGP hold timer, 3 s, decides a silent node).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.lab.router import BgpRouters, BgpSpec
from xdsr.local.cluster import LocalCluster

VIP = "203.0.113.30"
ALL = [0, 1, 2]
FAULTS = ("sigkill", "link")


def spread(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "min": min(xs), "median": statistics.median(xs), "max": max(xs)}


@contextlib.contextmanager
def deployment(bfd: bool) -> Iterator[tuple[Fabric, BgpRouters, LocalCluster]]:
    tenant = TenantSpec(name="a", n_backends=3, vip=VIP, frontend_vid=10, backend_vid=100)
    with (
        build_fabric(FabricSpec(n_lbns=3, prefix="xbench-bgp", tenants=(tenant,))) as fab,
        BgpRouters.start(fab, BgpSpec(bfd=bfd)) as routers,
        LocalCluster.on_fabric(fab, health_checks=False, projects=("a",), agent_args=routers.agent_args()) as cluster,
    ):
        wait_until(lambda: routers.established("a") == ["lbn0", "lbn1", "lbn2"], timeout=30, what="BGP sessions")
        yield fab, routers, cluster


def _body(fab: Fabric, salt: int) -> dict[str, Any]:
    t = fab.tenant("a")
    members = [
        {"address": b.ip, "protocol_port": t.tcp_port, "segment": {"type": "vlan", "id": b.vid}} for b in t.backends
    ]
    pool = {"name": "web", "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT", "members": members}
    listener = {"name": "web", "protocol": "TCP", "protocol_port": t.tcp_port, "default_pool": pool}
    return {
        "loadbalancer": {
            "name": f"bgp-{salt}",
            "vip_address": VIP,
            "vip_segment": {"type": "vlan", "id": t.frontend_vid},
            "listeners": [listener],
        }
    }


def _route_is(routers: BgpRouters, want: list[int], timeout: float) -> float:
    """Seconds until the router's FIB has exactly `want` (polled every ms)."""
    t0 = time.perf_counter()
    wait_until(lambda: routers.lbns_in_route("a") == want, timeout=timeout, interval=0.001, what=f"route {want}")
    return time.perf_counter() - t0


def announce(fab: Fabric, routers: BgpRouters, cluster: LocalCluster, runs: int) -> list[float]:
    out = []
    with cluster.client("a") as api:
        for i in range(runs):
            t0 = time.perf_counter()
            r = api.post("/v2/lbaas/loadbalancers", json=_body(fab, i))
            r.raise_for_status()
            lb_id = r.json()["loadbalancer"]["id"]
            wait_until(lambda: routers.lbns_in_route("a") == ALL, timeout=30, interval=0.001, what="announced")
            out.append(time.perf_counter() - t0)
            api.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"}).raise_for_status()
            _route_is(routers, [], 30)
            # The VIP is free again once the deletion is complete, not when it is accepted.
            wait_until(
                lambda i=lb_id: api.get(f"/v2/lbaas/loadbalancers/{i}").status_code == 404, timeout=30, what="deleted"
            )
    return out


def failover(
    fab: Fabric, routers: BgpRouters, cluster: LocalCluster, fault: str, runs: int, conns: int
) -> tuple[list[float], list[int]]:
    """Per run: seconds from the fault to the next hop leaving, connections lost."""
    times: list[float] = []
    lost: list[int] = []
    for run in range(runs):
        # A node back from the previous run is protected by BFD only once its
        # BFD session is up too (it follows the BGP session by up to ~1 s).
        wait_until(lambda: routers.protected("a") == ["lbn0", "lbn1", "lbn2"], timeout=30, what="sessions protected")
        victim = run % 3
        name = f"lbn{victim}"
        session = fab.tcp_session("a", conns=conns, interval_ms=20)
        undo: Callable[[], None]
        try:
            if fault == "sigkill":
                t0 = time.perf_counter()
                os.kill(cluster.agents[name].pid, signal.SIGKILL)
                undo = cluster.agents[name].start
            else:
                port = fab.lbns[victim].switch_port
                t0 = time.perf_counter()
                fab.lab.netlink(fab.switch_ns, lambda ipr, p=port: ipr.link("set", ifname=p, state="down"))

                def undo(p: str = port) -> None:
                    fab.lab.netlink(fab.switch_ns, lambda ipr: ipr.link("set", ifname=p, state="up"))

            want = [i for i in ALL if i != victim]
            wait_until(lambda w=want: routers.lbns_in_route("a") == w, timeout=30, interval=0.001, what="failover")
            times.append(time.perf_counter() - t0)
            if fault == "sigkill":
                cluster.agents[name].wait(10)
        finally:
            result = session.stop()
        lost.append(len(result.broken))
        undo()
        _route_is(routers, ALL, 60)
    return times, lost


def run(runs: int = 10, conns: int = 30, faults: tuple[str, ...] = FAULTS) -> dict[str, Any]:
    doc: dict[str, Any] = {"runs": runs, "conns": conns, "failover": {}}
    for bfd in (True, False):
        with deployment(bfd) as (fab, routers, cluster):
            if bfd:
                doc["announce_s"] = spread(announce(fab, routers, cluster, runs))
            with cluster.client("a") as api:
                api.post("/v2/lbaas/loadbalancers", json=_body(fab, 999)).raise_for_status()
            _route_is(routers, ALL, 30)
            for fault in faults:
                times, lost = failover(fab, routers, cluster, fault, runs, conns)
                doc["failover"][f"{fault}/{'bfd' if bfd else 'hold-timer'}"] = {
                    "seconds": spread(times),
                    "lost": lost,
                    "lost_total": sum(lost),
                }
    return doc
