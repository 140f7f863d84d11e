"""A load balancer on a VXLAN network, end to end through the API: real TCP
from a client behind a Linux VXLAN device, through two LB nodes (the whole
control plane as processes), to backends behind Linux VXLAN devices, and
back from the backends straight to the client. Two tenants have the same
VIP, the same client address and the same backend addresses on different
VNIs, and stay apart. The LB nodes check the members through the tunnels.

    client-a (VTEP .100) ─┐                        ┌─ a0 (VTEP .21), a1 (.22)   VNI 1000
    client-b (VTEP .101) ─┼── underlay bridge ─────┼─ b0 (VTEP .31), b1 (.32)   VNI 1001
                          └── lbn0 (.1), lbn1 (.2) ┘      192.0.2.0/24

Every VXLAN device here has learning off and static forwarding entries, as
Neutron's L2 population gives a hypervisor: a client sends the VIP's frames
to its LB node's endpoint; a backend sends to the client's endpoint (direct
server return), floods ARP to the client and the LB nodes (a node answers
for its health source), and reaches each node's trunk MAC (where health
checks come from) at that node's endpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import IS_ROOT, needs_root
from tests.controlplane.conftest import until
from xdsr.lab import Lab
from xdsr.lab.traffic import EchoServer, TcpResult, run_tcp_client, start_echo
from xdsr.local.cluster import LocalCluster

pytestmark = needs_root

VIP = "203.0.113.10"
VIP_MAC = "02:00:00:00:0a:0a"  # the clients' neighbour entry for the VIP: any MAC, the node keys on the VIP
CLIENT, BACKENDS = "10.0.0.100", ("10.0.0.5", "10.0.0.6")  # the same in both tenants
LBNS = {"lbn0": "192.0.2.1", "lbn1": "192.0.2.2"}
HEALTH = {"lbn0": "10.0.0.250", "lbn1": "10.0.0.251"}  # each node's health source on every VNI
# tenant: VNI, client's endpoint, its LB node, backends' endpoints
TENANTS = {"a": (1000, "192.0.2.100", "lbn0", ("192.0.2.21", "192.0.2.22")),
           "b": (1001, "192.0.2.101", "lbn1", ("192.0.2.31", "192.0.2.32"))}  # fmt: skip
B_SUBNET = str(uuid.uuid4())  # tenant b's VIP subnet: its segment comes from the networks file


@dataclass
class Env:
    lab: Lab
    cluster: LocalCluster
    ns: dict[str, str]  # role -> namespace
    inner_mac: dict[str, str]  # backend -> its VXLAN device's MAC
    echo: dict[str, EchoServer]
    lbs: dict[str, str]  # tenant -> load balancer id

    def tcp(self, tenant: str, conns: int = 30) -> TcpResult:
        return run_tcp_client(self.lab, self.ns[f"client-{tenant}"], VIP, 80, conns=conns, interval_ms=20, duration=0.6)

    def members(self, tenant: str) -> dict[str, str]:
        """address -> operating status of the tenant's members."""
        with self.cluster.client(tenant) as c:
            tree = c.get(f"/v2/lbaas/loadbalancers/{self.lbs[tenant]}/status").json()
        pool = tree["statuses"]["loadbalancer"]["listeners"][0]["pools"][0]
        return {m["address"]: m["operating_status"] for m in pool["members"]}


def _vxlan(lab: Lab, ns: str, vni: int, local: str, addr: str, fdb: list[tuple[str, str]]) -> str:
    """A VXLAN device `vx` on ns's underlay port with static forwarding
    entries (mac, remote endpoint) only; its MAC."""
    return lab.add_vxlan(ns, "vx", vni, local=local, dev="u0", address=f"{addr}/24", fdb=fdb, learning=False).mac


def _lb_body(tenant: str, env_macs: dict[str, str]) -> dict[str, Any]:
    vni, _, _, vteps = TENANTS[tenant]
    members = [
        {"address": addr, "protocol_port": 80, "mac_address": env_macs[f"{tenant}{i}"], "vtep_address": vtep}
        for i, (addr, vtep) in enumerate(zip(BACKENDS, vteps, strict=True))
    ]
    lb: dict[str, Any] = {"name": f"{tenant}-web", "vip_address": VIP}
    if tenant == "a":
        lb["vip_segment"] = {"type": "vxlan", "id": vni}
    else:
        lb["vip_subnet_id"] = B_SUBNET
    pool = {
        "name": f"{tenant}-web",
        "protocol": "TCP",
        "lb_algorithm": "ROUND_ROBIN",
        "members": members,
        "healthmonitor": {"type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2},
    }
    lb["listeners"] = [{"name": f"{tenant}-80", "protocol": "TCP", "protocol_port": 80, "default_pool": pool}]
    return {"loadbalancer": lb}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root: network namespaces and XDP")
    with Lab("xcov") as lab:
        fab = lab.add_netns("fab", ipv6=False)
        lab.add_bridge(fab, "br0")
        underlay = dict(LBNS)
        for t, (_, client, _, vteps) in TENANTS.items():
            underlay[f"client-{t}"] = client
            underlay |= {f"{t}{i}": v for i, v in enumerate(vteps)}
        ns: dict[str, str] = {}
        trunk_mac: dict[str, str] = {}
        for role, addr in underlay.items():
            ns[role] = lab.add_netns(role, ipv6=False)
            lab.add_veth(ns[role], "u0", fab, f"p-{role}")
            lab.enslave(fab, f"p-{role}", "br0")
            lab.add_address(ns[role], "u0", f"{addr}/24")
            if role in LBNS:
                trunk_mac[role] = lab.iface(ns[role], "u0").mac
                lab.attach_xdp(fab, f"p-{role}")  # XDP_TX out of a veth needs a program on its peer
        inner_mac: dict[str, str] = {}
        echo: dict[str, EchoServer] = {}
        for t, (vni, client, _, vteps) in TENANTS.items():
            c = ns[f"client-{t}"]
            backends = [f"{t}{i}" for i in range(len(vteps))]
            # The client floods to its backends' endpoints (their ARP answers) and sends the VIP's frames to its node.
            client_mac = _vxlan(lab, c, vni, client, CLIENT, [("00:00:00:00:00:00", v) for v in vteps])
            lbn = TENANTS[t][2]
            lab.run(c, ["bridge", "fdb", "append", VIP_MAC, "dev", "vx", "dst", LBNS[lbn]])
            lab.run(c, ["ip", "route", "add", f"{VIP}/32", "dev", "vx"])
            lab.run(c, ["ip", "neigh", "add", VIP, "lladdr", VIP_MAC, "dev", "vx", "nud", "permanent"])
            lab.sysctl(c, {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.vx.rp_filter": 0})
            for b, addr, vtep in zip(backends, BACKENDS, vteps, strict=True):
                fdb = [(client_mac, client), *((trunk_mac[n], LBNS[n]) for n in LBNS)]
                fdb += [("00:00:00:00:00:00", v) for v in (client, *LBNS.values())]
                inner_mac[b] = _vxlan(lab, ns[b], vni, vtep, addr, fdb)
                lab.run(ns[b], ["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])
                lab.sysctl(
                    ns[b],
                    {
                        "net.ipv4.conf.all.arp_ignore": 1,
                        "net.ipv4.conf.all.arp_announce": 2,
                        "net.ipv4.conf.all.rp_filter": 0,
                        "net.ipv4.conf.vx.rp_filter": 0,
                    },
                )
                echo[b] = start_echo(lab, ns[b], b, tcp_port=80, udp_port=None)
        subnets = [{"id": B_SUBNET, "cidr": "203.0.113.0/24", "segment": {"type": "vxlan", "id": TENANTS["b"][0]}}]
        cluster = LocalCluster(
            [(n, ns[n], "u0") for n in LBNS],
            lab.bpffs_dir(),
            projects=tuple(TENANTS),
            group_size=len(LBNS),
            subnets=subnets,
            health_sources={n: [f"vxlan:{v[0]}={HEALTH[n]}" for v in TENANTS.values()] for n in LBNS},
            agent_args={n: ["--vtep-address", addr] for n, addr in LBNS.items()},
        )
        with cluster:
            yield Env(lab, cluster, ns, inner_mac, echo, {})


@pytest.fixture(scope="module")
def lbs(env: Env) -> dict[str, str]:
    for t in TENANTS:
        with env.cluster.client(t) as c:
            r = c.post("/v2/lbaas/loadbalancers", json=_lb_body(t, env.inner_mac))
            assert r.status_code == 201, r.text
            lb = r.json()["loadbalancer"]
        assert lb["vip_segment"] == {"type": "vxlan", "id": TENANTS[t][0]}
        env.lbs[t] = lb["id"]
    for t, lb_id in env.lbs.items():
        with env.cluster.client(t) as c:

            def active(c: httpx.Client = c, lb_id: str = lb_id) -> bool:
                return (
                    c.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["provisioning_status"] == "ACTIVE"
                )

            try:
                until(active, 30, what=f"load balancer of {t} ACTIVE")
            except TimeoutError:
                raise AssertionError(env.cluster.logs()) from None
    return env.lbs


def test_tcp_through_vxlan_reaches_each_tenants_own_backends(env: Env, lbs: dict[str, str]) -> None:
    for t in TENANTS:
        result = until(lambda t=t: (r := env.tcp(t)).all_ok and len(r.by_backend()) == 2 and r, 20,
                       what=f"tenant {t}'s connections on both its backends")  # fmt: skip
        assert set(result.by_backend()) == {f"{t}0", f"{t}1"}, result.by_backend()
        assert not result.switched


def test_replies_go_from_the_backends_straight_to_the_client(env: Env, lbs: dict[str, str]) -> None:
    c = env.ns["client-a"]
    rules = {n: ["-s", addr, "-p", "udp", "--dport", "4789"] for n, addr in LBNS.items()}
    rules |= {f"a{i}": ["-s", v, "-p", "udp", "--dport", "4789"] for i, v in enumerate(TENANTS["a"][3])}
    for name, match in rules.items():
        env.lab.run(c, ["iptables", "-w", "-I", "INPUT", *match, "-m", "comment", "--comment", f"from-{name}"])
    result = env.tcp("a", conns=20)
    assert result.all_ok
    out = env.lab.output(c, ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"])
    counts = {name: next(int(ln.split()[0]) for ln in out.splitlines() if f"/* from-{name} */" in ln) for name in rules}
    assert counts["lbn0"] == counts["lbn1"] == 0, counts  # nothing comes back through an LB node
    assert counts["a0"] + counts["a1"] >= 20 * 3, counts  # SYN-ACK, data, FIN of every connection


def test_health_checks_reach_members_through_the_tunnels(env: Env, lbs: dict[str, str]) -> None:
    # Checked by both nodes, from their health sources on each VNI: ONLINE, not NO_MONITOR.
    for t in TENANTS:
        until(lambda t=t: set(env.members(t).values()) == {"ONLINE"}, 20, what=f"{t}'s members ONLINE")
    # a0's service dies: the nodes see it through the tunnel, and its flows go to a1 only.
    env.echo["a0"].stop()
    until(lambda: env.members("a") == {BACKENDS[0]: "ERROR", BACKENDS[1]: "ONLINE"}, 20, what="a0 ERROR")
    result = until(lambda: (r := env.tcp("a", conns=20)).all_ok and r, 20, what="tenant a served by a1")
    assert set(result.by_backend()) == {"a1"}
    # Tenant b's a0 twin (same address, other VNI) is not touched.
    assert env.members("b") == {BACKENDS[0]: "ONLINE", BACKENDS[1]: "ONLINE"}
    env.echo["a0"] = start_echo(env.lab, env.ns["a0"], "a0", tcp_port=80, udp_port=None)
    until(lambda: set(env.members("a").values()) == {"ONLINE"}, 20, what="a0 back ONLINE")
    result = until(lambda: (r := env.tcp("a")).all_ok and len(r.by_backend()) == 2 and r, 20, what="a0 back")
    assert set(result.by_backend()) == {"a0", "a1"}
