"""The load-balancing scenarios of the paper's Table 2, as desired state.

Scenario A: 1 VIP with 255 backends. Scenario B: 128 VIPs sharing 4000
backends between them (31 or 32 each). VIPs come from 198.18.0.0/15, the
range RFC 2544 reserves for benchmarks. Every service listens on UDP and TCP
port 9 (discard) on the frontend VLAN, and table sizes are the defaults, so
the benchmark measures the tables xdsr really builds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from xdsr.dataplane.config import parse_config
from xdsr.dataplane.model import Service

FRONTEND_VLAN = 10
PORT = 9
# The VXLAN scenario: the VIP on VNI 1000, its backends on VNI 2000 behind
# tunnel endpoints 192.0.2.16-79 (64 hypervisors), the LB node's at 192.0.2.1.
FRONTEND_VNI = 1000
BACKEND_VNI = 2000
LB_VTEP = "192.0.2.1"


@dataclass(frozen=True)
class Scenario:
    name: str
    n_vips: int
    n_backends: int
    vxlan: bool = False  # the VIPs on a VXLAN segment, the backends behind tunnel endpoints

    @property
    def label(self) -> str:
        return f"{self.name} ({self.n_vips} VIP{'s' if self.n_vips > 1 else ''}, {self.n_backends} backends)"

    def vips(self) -> list[str]:
        base = int(ipaddress.IPv4Address("198.18.0.1"))
        return [str(ipaddress.IPv4Address(base + i)) for i in range(self.n_vips)]

    def backend_mac(self, i: int) -> str:
        return f"02:bb:00:00:{i >> 8:02x}:{i & 0xFF:02x}"

    def backend_vlan(self, i: int) -> int:
        return 100 + i % 100

    def config(self) -> dict[str, object]:
        services = []
        vips = self.vips()
        for v, vip in enumerate(vips):
            # Backends are dealt out round robin so every VIP gets its share.
            own = range(v, self.n_backends, self.n_vips)
            backends: list[dict[str, object]]
            if self.vxlan:
                backends = [
                    {"mac": self.backend_mac(i), "vni": BACKEND_VNI, "vtep": f"192.0.2.{16 + i % 64}"} for i in own
                ]
                segment = {"type": "vxlan", "id": FRONTEND_VNI}
            else:
                backends = [{"mac": self.backend_mac(i), "vlan": self.backend_vlan(i)} for i in own]
                segment = {"type": "vlan", "id": FRONTEND_VLAN}
            for proto in ("udp", "tcp"):
                services.append({"vip": vip, "port": PORT, "protocol": proto, "segment": segment, "backends": backends})
        return {"services": services}

    def services(self, next_hop: str | None = None) -> list[Service]:
        """The data plane's services; next_hop: the underlay's MAC towards
        the backends' tunnel endpoints (the VXLAN scenario)."""
        return parse_config(self.config()).to_services(next_hop)


SCENARIO_A = Scenario("A", 1, 255)
SCENARIO_B = Scenario("B", 128, 4000)
SCENARIO_VXLAN = Scenario("VXLAN", 1, 255, vxlan=True)  # scenario A behind VXLAN
SCENARIOS = (SCENARIO_A, SCENARIO_B)
