"""The demo's third tenant: on a VXLAN network, as in an overlay cloud.

Added to a built lab fabric: its switch doubles as the underlay (untagged,
192.0.2.0/24), each LB node's trunk gets a tunnel endpoint there, and the
tenant's client and backends get an underlay port and a Linux VXLAN device
on VNI 5000 (inner 10.50.0.0/24; the same VIP as the VLAN tenants). Their
forwarding entries are static, as Neutron's L2 population gives a
hypervisor: the client sends the VIP's frames to one LB node's endpoint,
a backend sends to the client's endpoint (direct server return) and to each
node's endpoint for the node's trunk MAC (health checks come from it), and
floods ARP to the client and the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xdsr.lab import Fabric
from xdsr.lab.traffic import EchoServer, TcpResult, run_tcp_client, start_echos

NAME = "green"
VNI = 5000
UNDERLAY = "192.0.2.{}"  # LB node i at .1+i, the client at .100, backend i at .21+i
INNER = "10.50.0.{}"  # the client at .100, backend i at .11+i, LB node i's health source at .250+i
VIP_MAC = "02:00:00:00:50:0a"  # the client's neighbour entry for the VIP: any MAC (the node keys on the VIP)
ZERO = "00:00:00:00:00:00"  # a VXLAN device's default (flood) entry


@dataclass
class VxlanTenant:
    fab: Fabric
    vip: str
    tcp_port: int
    client_ns: str
    via_lbn: int  # the LB node whose endpoint the client sends to
    backends: list[tuple[str, str, str, str]]  # (name, inner address, inner MAC, endpoint)
    echos: list[EchoServer]

    def lb_request(self) -> dict[str, Any]:
        """A fully populated load balancer on the VXLAN network: members with
        their inner MAC and their host's endpoint (Neutron's port MAC and
        binding, in a cloud), checked through the tunnels."""
        members = [
            {"address": addr, "protocol_port": self.tcp_port, "mac_address": mac, "vtep_address": vtep}
            for _, addr, mac, vtep in self.backends
        ]
        pool = {
            "name": f"{NAME}-tcp",
            "protocol": "TCP",
            "lb_algorithm": "SOURCE_IP_PORT",
            "members": members,
            "healthmonitor": {"type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 2},
        }
        listener = {"name": f"{NAME}-tcp", "protocol": "TCP", "protocol_port": self.tcp_port, "default_pool": pool}
        return {
            "loadbalancer": {
                "name": f"{NAME}-web",
                "vip_address": self.vip,
                "vip_segment": {"type": "vxlan", "id": VNI},
                "listeners": [listener],
            }
        }

    def tcp_client(self, **kwargs: Any) -> TcpResult:
        return run_tcp_client(self.fab.lab, self.client_ns, self.vip, self.tcp_port, **kwargs)

    def stop(self) -> None:
        for e in self.echos:
            e.stop()


def lbn_endpoint(i: int) -> str:
    return UNDERLAY.format(1 + i)


def agent_args(fab: Fabric) -> dict[str, list[str]]:
    """Each LB node's `xdsr agent` options for the overlay: its endpoint and its health source on the VNI."""
    return {
        f"lbn{i}": ["--vtep-address", lbn_endpoint(i), "--health-source", f"vxlan:{VNI}={INNER.format(250 + i)}"]
        for i in range(len(fab.lbns))
    }


def _vxlan(fab: Fabric, ns: str, local: str, addr: str, fdb: list[tuple[str, str]]) -> str:
    """The tenant's VXLAN device `vx` on ns's underlay port, static entries only; its MAC."""
    return fab.lab.add_vxlan(ns, "vx", VNI, local=local, dev="u0", address=f"{addr}/24", fdb=fdb, learning=False).mac


def _underlay_port(fab: Fabric, role: str, addr: str) -> str:
    lab = fab.lab
    ns = lab.add_netns(role, ipv6=False)
    port = f"u-{role}"[:15]
    lab.add_veth(ns, "u0", fab.switch_ns, port)
    lab.enslave(fab.switch_ns, port, fab.bridge)
    lab.add_address(ns, "u0", f"{addr}/24")
    return ns


def build(fab: Fabric, vip: str, n_backends: int = 3, tcp_port: int = 80, via_lbn: int = 2) -> VxlanTenant:
    lab = fab.lab
    trunks = [fab.lbn_trunk(i) for i in range(len(fab.lbns))]
    for i, t in enumerate(trunks):
        lab.add_address(t.netns, t.ifname, f"{lbn_endpoint(i)}/24")  # the node's tunnel endpoint
    client_vtep = UNDERLAY.format(100)
    backend_vteps = [UNDERLAY.format(21 + i) for i in range(n_backends)]
    client_ns = _underlay_port(fab, f"{NAME}-client", client_vtep)
    client_mac = _vxlan(fab, client_ns, client_vtep, INNER.format(100), [(ZERO, v) for v in backend_vteps])
    lab.run(client_ns, ["bridge", "fdb", "append", VIP_MAC, "dev", "vx", "dst", lbn_endpoint(via_lbn)])
    lab.run(client_ns, ["ip", "route", "add", f"{vip}/32", "dev", "vx"])
    lab.run(client_ns, ["ip", "neigh", "add", vip, "lladdr", VIP_MAC, "dev", "vx", "nud", "permanent"])
    lab.sysctl(client_ns, {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.vx.rp_filter": 0})
    backends = []
    specs = []
    for i, vtep in enumerate(backend_vteps):
        name = f"{NAME}-be{i}"
        ns = _underlay_port(fab, name, vtep)
        fdb = [(client_mac, client_vtep), *((t.mac, lbn_endpoint(j)) for j, t in enumerate(trunks))]
        fdb += [(ZERO, v) for v in (client_vtep, *(lbn_endpoint(j) for j in range(len(trunks))))]
        addr = INNER.format(11 + i)
        mac = _vxlan(fab, ns, vtep, addr, fdb)
        lab.run(ns, ["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
        lab.sysctl(
            ns,
            {
                "net.ipv4.conf.all.arp_ignore": 1,
                "net.ipv4.conf.all.arp_announce": 2,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.vx.rp_filter": 0,
            },
        )
        backends.append((name, addr, mac, vtep))
        specs.append((ns, name, tcp_port, None))
    echos = start_echos(lab, specs)
    return VxlanTenant(fab, vip, tcp_port, client_ns, via_lbn, backends, echos)
