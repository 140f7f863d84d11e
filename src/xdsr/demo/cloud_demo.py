"""The demo: a small cloud in network namespaces, driven through the API.

Builds a lab fabric — per tenant a client and a router, a switch, one group of
three LB nodes behind the routers' ECMP route (learnt over BGP: each router
runs BIRD, each agent its own), backends on tenant VLANs with the VIP on
their loopback, and a third tenant on VXLAN (vxlan_tenant.py) — starts the whole control plane as processes (etcd, API
server, operator, one agent per LB node), creates a load balancer per tenant
through the REST API, sends real traffic and prints what happened: the spread
over LB nodes and backends, direct server return, an LB node's agent killed
(its next hop leaves the route), a node drained without losing a connection,
and a backend whose service dies (health checks).
Everything is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from xdsr.demo import vxlan_tenant
from xdsr.demo.dataplane_demo import VIP, _count_router, _router_counts
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.lab.router import BgpRouters
from xdsr.local.cluster import LocalCluster
from xdsr.local.probes import Probes

TENANTS = (
    TenantSpec(name="blue", frontend_vid=10, backend_vid=100, n_backends=4, vip=VIP),
    TenantSpec(name="red", frontend_vid=20, backend_vid=200, n_backends=3, vip=VIP),
)


def _lb_request(fab: Fabric, tenant: str) -> dict[str, Any]:
    """A fully populated load balancer: TCP and UDP, members by address only
    (the LB nodes find their MACs by ARP on the member VLAN)."""
    t = fab.tenant(tenant)

    def listener(proto: str, port: int) -> dict[str, Any]:
        return {
            "name": f"{tenant}-{proto.lower()}",
            "protocol": proto,
            "protocol_port": port,
            "default_pool": {
                "name": f"{tenant}-{proto.lower()}",
                "protocol": proto,
                "lb_algorithm": "SOURCE_IP_PORT",
                "members": [
                    {"address": b.ip, "protocol_port": port, "segment": {"type": "vlan", "id": b.vid}}
                    for b in t.backends
                ],
                # Checked every second by each LB node from its own address on
                # the member VLAN; down after 2 failures, up after 1 success.
                "healthmonitor": {
                    "type": "TCP" if proto == "TCP" else "UDP-CONNECT",
                    "delay": 1,
                    "timeout": 1,
                    "max_retries": 1,
                    "max_retries_down": 2,
                },
            },
        }

    return {
        "loadbalancer": {
            "name": f"{tenant}-web",
            "vip_address": t.vip,
            "vip_segment": {"type": "vlan", "id": t.frontend_vid},
            "listeners": [listener("TCP", t.tcp_port), listener("UDP", t.udp_port)],
        }
    }


def _wait_active(api: Any, lb_id: str) -> None:
    """Until the API says the load balancer is ACTIVE (api: the tenant's httpx client)."""

    def active() -> bool:
        lb = api.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
        return bool(lb["provisioning_status"] == "ACTIVE")

    wait_until(active, timeout=30, interval=0.01)


def _per_node_packets(cluster: LocalCluster, lb_id: str) -> list[int]:
    import httpx

    out = []
    for url in cluster.agent_urls.values():
        try:
            r = httpx.get(url + "/v1/state", headers={"Authorization": f"Bearer {cluster.tokens.agents}"}, timeout=5)
        except httpx.TransportError:
            out.append(0)  # a killed agent
            continue
        out.append(sum(s["packets"] for s in r.json()["services"] if s["id"].startswith(lb_id)))
    return out


def run(console: Console | None = None, conns: int = 60) -> dict[str, object]:
    con = console or Console(soft_wrap=True)
    findings: dict[str, object] = {}
    con.rule("[bold]xdsr demo: a small cloud in network namespaces")
    t0 = time.perf_counter()
    with (
        build_fabric(FabricSpec(n_lbns=3, prefix="xdsr-demo", tenants=TENANTS)) as fab,
        BgpRouters.start(fab) as routers,
    ):
        fab.lab.install_signal_handlers()
        green = vxlan_tenant.build(fab, VIP)
        con.print(
            f"fabric {fab.lab.name}: {len(fab.lab.namespaces)} namespaces in {time.perf_counter() - t0:.1f} s — "
            f"3 LB nodes; each tenant router runs BIRD and learns its VIP route from the LB nodes over BGP (with "
            f"BFD); tenants blue (VLAN 10 -> 100) and red (VLAN 20 -> 200), both with VIP {VIP} and backends "
            f"10.1.0.11..; tenant green on VXLAN {vxlan_tenant.VNI} (same VIP), its client and backends behind Linux "
            "VXLAN devices, the LB nodes' tunnel endpoints 192.0.2.1-3",
            highlight=False,
        )
        agent_args = {
            name: [*routers.agent_args().get(name, []), *extra] for name, extra in vxlan_tenant.agent_args(fab).items()
        }
        with LocalCluster.on_fabric(fab, projects=("blue", "red", "green"), agent_args=agent_args) as cluster:
            con.print(
                f"control plane: etcd {cluster.etcd.endpoint}, API {cluster.api_url}, operator, "
                f"agents on {', '.join(n for n, _, _ in cluster.lbns)}",
                highlight=False,
            )
            wait_until(lambda: cluster.client().get("/v2/lbaas/loadbalancers").status_code == 200, timeout=20)
            probes: Probes | None = None
            lbs: dict[str, str] = {}
            for tenant in ("blue", "red"):
                _count_router(fab, tenant)
                with cluster.client(tenant) as api:
                    t1 = time.perf_counter()
                    resp = api.post("/v2/lbaas/loadbalancers", json=_lb_request(fab, tenant))
                    resp.raise_for_status()
                    lb_id = lbs[tenant] = resp.json()["loadbalancer"]["id"]
                    if tenant == "blue":
                        probes = wait_until(
                            lambda: Probes.of(cluster), timeout=20, ignore=(OSError,), what="programs pinned"
                        )
                        wait_until(lambda p=probes: all(p.forwarding(VIP)), timeout=30, interval=0.001)
                        forwarding = time.perf_counter() - t1
                        wait_until(lambda: routers.lbns_in_route("blue") == [0, 1, 2], timeout=30, interval=0.001)
                        announced = time.perf_counter() - t1
                    _wait_active(api, lb_id)
                    active = time.perf_counter() - t1
                    if tenant == "blue":
                        con.print(
                            f"POST /v2/lbaas/loadbalancers ({tenant}: TCP {fab.tenant(tenant).tcp_port} + UDP "
                            f"{fab.tenant(tenant).udp_port}, members by address, MACs found by ARP on VLAN 100): "
                            f"all 3 LB nodes forward after {forwarding * 1000:.0f} ms, announced by all 3 over BGP "
                            f"(the router's FIB has 3 next hops) after {announced * 1000:.0f} ms, ACTIVE after "
                            f"{active * 1000:.0f} ms",
                            highlight=False,
                        )
                        findings["forwarding_ms"] = forwarding * 1000
                        findings["announced_ms"] = announced * 1000
                    else:
                        con.print(f"{tenant}: same VIP on VLAN 20, ACTIVE after {active * 1000:.0f} ms")
            with cluster.client("green") as api:
                t1 = time.perf_counter()
                resp = api.post("/v2/lbaas/loadbalancers", json=green.lb_request())
                resp.raise_for_status()
                lbs["green"] = lb_id = resp.json()["loadbalancer"]["id"]
                _wait_active(api, lb_id)
                con.print(
                    f"green: same VIP on VXLAN {vxlan_tenant.VNI}, members with their inner MAC and their host's "
                    f"tunnel endpoint, ACTIVE after {(time.perf_counter() - t1) * 1000:.0f} ms",
                    highlight=False,
                )

            con.rule("traffic")
            before = _per_node_packets(cluster, lbs["blue"])
            blue = fab.tcp_client("blue", conns=conns, interval_ms=50, duration=1.0)
            per_lbn = [a - b for a, b in zip(_per_node_packets(cluster, lbs["blue"]), before, strict=True)]
            red = fab.tcp_client("red", conns=conns // 2, interval_ms=50, duration=0.5)
            vxlan = green.tcp_client(conns=conns, interval_ms=50, duration=0.5)
            udp = fab.udp_client("blue", flows=100)
            table = Table("tenant", "backend", "TCP connections")
            for tenant, res in (("blue", blue), ("red", red), ("green", vxlan)):
                for name, n in sorted(res.by_backend().items()):
                    table.add_row(tenant, name, str(n))
            con.print(table)
            counts = _router_counts(fab, "blue")
            con.print(
                f"blue: {len(blue.connections)} connections, {len(blue.broken)} broken, {len(blue.switched)} changed "
                f"backend; UDP: {len(udp.answered)}/{len(udp.flows)} answered over {len(udp.by_backend())} backends; "
                f"red saw only red backends: {set(red.by_backend()) <= {b.name for b in fab.tenant('red').backends}}; "
                f"green (VXLAN): {len(vxlan.connections)} connections, {len(vxlan.broken)} broken, the LB node "
                "re-encapsulated each to its backend's tunnel endpoint",
                highlight=False,
            )
            con.print(f"packets each LB node forwarded for blue (ECMP spread): {per_lbn}", highlight=False)
            con.print(
                f"blue router: {counts['to-lbns']} request packets to the LB nodes, {counts['replies-direct']} "
                f"reply packets straight from the backends, {counts['replies-via-lbns']} via the LB nodes "
                "(direct server return)",
                highlight=False,
            )
            findings.update(
                blue=dict(blue.by_backend()),
                red=dict(red.by_backend()),
                green=dict(vxlan.by_backend()),
                per_lbn=per_lbn,
                router=counts,
                broken=len(blue.broken) + len(red.broken) + len(vxlan.broken),
                udp_unanswered=len(udp.unanswered),
            )

            findings.update(_bgp_scenes(con, fab, routers, cluster, lbs["blue"], conns))
            findings.update(_health_scene(con, fab, cluster, lbs["blue"], conns))
            if probes is not None:
                probes.close()
    con.print(f"cleaned up lab {fab.lab.name}: no namespace, process, program or pinned map left")
    return findings


def _route(fab: Fabric, tenant: str) -> str:
    """The router's kernel route to the VIP, as `ip route` prints it."""
    t = fab.tenant(tenant)
    return fab.lab.output(t.router_ns, ["ip", "route", "show", f"{t.vip}/32"]).strip()


def _agent_call(cluster: LocalCluster, name: str, method: str, path: str) -> dict[str, Any]:
    import httpx

    r = httpx.request(
        method, cluster.agent_urls[name] + path, headers={"Authorization": f"Bearer {cluster.tokens.agents}"}, timeout=5
    )
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def _bgp_scenes(
    con: Console, fab: Fabric, routers: BgpRouters, cluster: LocalCluster, lb_id: str, conns: int
) -> dict[str, object]:
    import os
    import signal

    out: dict[str, object] = {}
    con.rule("an LB node's agent is killed (SIGKILL)")
    con.print(f"blue router's FIB, learnt over BGP:\n{_route(fab, 'blue')}", highlight=False)
    session = fab.tcp_session("blue", conns=conns, interval_ms=50)
    try:
        base = sum(_per_node_packets(cluster, lb_id))
        wait_until(lambda: sum(_per_node_packets(cluster, lb_id)) > base + conns * 5, timeout=20)
        agent = cluster.agents["lbn0"]
        t0 = time.perf_counter()
        os.kill(agent.pid, signal.SIGKILL)  # the agent alone: its BIRD dies with it (PDEATHSIG)
        wait_until(lambda: routers.lbns_in_route("blue") == [1, 2], timeout=10, interval=0.001)
        gone = time.perf_counter() - t0
        agent.wait(10)
        con.print(
            f"SIGKILL to lbn0's agent: {gone * 1000:.0f} ms later the router's FIB has 2 next hops:\n"
            f"{_route(fab, 'blue')}",
            highlight=False,
        )
        base_nodes = _per_node_packets(cluster, lb_id)[1:]
        wait_until(lambda: sum(_per_node_packets(cluster, lb_id)[1:]) > sum(base_nodes) + conns * 10, timeout=20)
    finally:
        after = session.stop()
    con.print(
        f"of {len(after.connections)} established connections {len(after.broken)} broke and {len(after.switched)} "
        "changed backend: every LB node computes the same Maglev table, so a flow that ECMP moves keeps its backend",
        highlight=False,
    )
    out.update(
        kill_ms=gone * 1000,
        withdraw_broken=len(after.broken),
        withdraw_switched=len(after.switched),
        backends_per_connection=dict(Counter(len(c.backends) for c in after.connections)),
    )
    cluster.agents["lbn0"].start()
    t1 = time.perf_counter()
    wait_until(lambda: routers.lbns_in_route("blue") == [0, 1, 2], timeout=30, interval=0.01)
    con.print(
        f"lbn0's agent restarted: back in the route {time.perf_counter() - t1:.1f} s later (the operator re-sends "
        "its state, then it announces)",
        highlight=False,
    )

    con.rule("an LB node is drained")
    session = fab.tcp_session("blue", conns=conns, interval_ms=50)
    try:
        t0 = time.perf_counter()
        st = _agent_call(cluster, "lbn1", "PUT", "/v1/drain")
        wait_until(lambda: routers.lbns_in_route("blue") == [0, 2], timeout=10, interval=0.001)
        drained = time.perf_counter() - t0
        base = sum(_per_node_packets(cluster, lb_id))
        wait_until(lambda: sum(_per_node_packets(cluster, lb_id)) > base + conns * 10, timeout=20)
    finally:
        during = session.stop()
    con.print(
        f"PUT /v1/drain on lbn1: state {st['state']!r}, it withdrew its VIPs and the router moved the traffic "
        f"after {drained * 1000:.0f} ms while lbn1 kept forwarding; of {len(during.connections)} established "
        f"connections {len(during.broken)} were lost",
        highlight=False,
    )
    # What the cloud's operators see meanwhile: the load balancer runs on two
    # nodes of three, and the API's admin view says which and why.
    with cluster.client() as api:

        def seen() -> tuple[str, dict[str, Any]] | None:
            op = api.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["operating_status"]
            node = next(n for n in api.get("/v2/lbaas/xdsr/lbns").json()["lbns"] if n["name"] == "lbn1")
            return (op, node) if op == "DEGRADED" and node["withheld"] else None

        op, node = wait_until(seen, timeout=20, interval=0.05)
    con.print(
        f"the API meanwhile: the load balancer is {op}; GET /v2/lbaas/xdsr/lbns: lbn1 {node['bgp']['state']}, "
        f"withholding {', '.join(node['withheld'])}",
        highlight=False,
    )
    _agent_call(cluster, "lbn1", "DELETE", "/v1/drain")
    wait_until(lambda: routers.lbns_in_route("blue") == [0, 1, 2], timeout=10, interval=0.01)
    out.update(
        drain_ms=drained * 1000,
        drain_broken=len(during.broken),
        drain_switched=len(during.switched),
        drain_operating_status=op,
    )
    return out


def _tcp_weights(cluster: LocalCluster) -> list[dict[str, int]]:
    """Per LB node, the weight of each member (by MAC) of blue's TCP service."""
    from xdsr.dataplane.loader import Dataplane
    from xdsr.dataplane.state import installed

    out = []
    for pin in cluster.pin_dirs.values():
        with Dataplane.open(pin) as dp:
            for s in installed(dp):
                if s.service.key.protocol == "tcp" and s.service.key.seg_id == TENANTS[0].frontend_vid:
                    out.append({b.mac: b.weight for b in s.service.backends})
    return out


def _health_scene(con: Console, fab: Fabric, cluster: LocalCluster, lb_id: str, conns: int) -> dict[str, object]:
    con.rule("a backend's service dies")
    t = fab.tenant("blue")
    victim = t.backends[1]
    with cluster.client("blue") as api:
        pool = next(
            p for p in api.get("/v2/lbaas/pools", params={"loadbalancer_id": lb_id}).json()["pools"]
            if p["protocol"] == "TCP"
        )  # fmt: skip
        members = api.get(f"/v2/lbaas/pools/{pool['id']}/members").json()["members"]
        member = next(m["id"] for m in members if m["address"] == victim.ip)

        def status() -> str:
            r = api.get(f"/v2/lbaas/pools/{pool['id']}/members/{member}")
            return str(r.json()["member"]["operating_status"])

        reject = ["INPUT", "-p", "tcp", "--dport", str(t.tcp_port), "-j", "REJECT", "--reject-with", "tcp-reset"]
        fab.lab.run(victim.netns, ["iptables", "-w", "-I", *reject])
        t0 = time.perf_counter()
        try:
            wait_until(lambda: all(w.get(victim.mac) == 0 for w in _tcp_weights(cluster)), timeout=30, interval=0.05)
            out_after = time.perf_counter() - t0
            wait_until(lambda: status() == "ERROR", timeout=30, interval=0.05)
            during = fab.tcp_client("blue", conns=conns, interval_ms=50, duration=0.5)
        finally:
            fab.lab.run(victim.netns, ["iptables", "-w", "-D", *reject])
        t1 = time.perf_counter()
        wait_until(lambda: all(w.get(victim.mac) == 1 for w in _tcp_weights(cluster)), timeout=30, interval=0.05)
        back_after = time.perf_counter() - t1
        wait_until(lambda: status() == "ONLINE", timeout=30, interval=0.05)
    con.print(
        f"{victim.name} refuses TCP (its service died): every LB node checks it each second from its own address "
        f"on VLAN {t.backend_vid}; after {out_after:.1f} s it had weight 0 on all 3 nodes and its member status "
        f"was ERROR. New connections meanwhile: {dict(sorted(during.by_backend().items()))}, "
        f"{len(during.broken)} failed. It answers again: back in every table after {back_after:.1f} s, ONLINE.",
        highlight=False,
    )
    return {
        "health_out_s": out_after,
        "health_back_s": back_after,
        "health_during": dict(during.by_backend()),
        "health_broken": len(during.broken),
    }
