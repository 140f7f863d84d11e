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


@dataclass(frozen=True)
class Scenario:
    name: str
    n_vips: int
    n_backends: int

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
            backends = [{"mac": self.backend_mac(i), "vlan": self.backend_vlan(i)} for i in own]
            for proto in ("udp", "tcp"):
                services.append(
                    {
                        "vip": vip,
                        "port": PORT,
                        "protocol": proto,
                        "segment": {"type": "vlan", "id": FRONTEND_VLAN},
                        "backends": backends,
                    }
                )
        return {"services": services}

    def services(self) -> list[Service]:
        return parse_config(self.config()).to_services()


SCENARIO_A = Scenario("A", 1, 255)
SCENARIO_B = Scenario("B", 128, 4000)
SCENARIOS = (SCENARIO_A, SCENARIO_B)
