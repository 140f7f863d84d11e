"""Whether each LB node of a local cluster forwards a service: its attached
XDP program runs on a made-up frame (BPF_PROG_TEST_RUN, xdsr.dataplane.probe),
so the tests, the demo and the benchmarks see the moment a node forwards
without sending a packet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.probe import attached_program, probe_frame, run_probe

if TYPE_CHECKING:
    from xdsr.local.cluster import LocalCluster

# The first tenant's frontend VLAN on a lab fabric (TenantSpec's default).
FRONTEND_VLAN = 10


class Probes:
    """Each LB node's attached program, to ask whether it forwards a VIP
    (TCP to `port` on VLAN `vlan`)."""

    def __init__(self, nodes: list[tuple[Path, str, str]], vlan: int = FRONTEND_VLAN, port: int = 80) -> None:
        self.vlan = vlan
        self.port = port
        self.progs: list[tuple[bpf.Program, str]] = [attached_program(pin, ifname, ns) for pin, ns, ifname in nodes]

    @classmethod
    def of(cls, cluster: LocalCluster, vlan: int = FRONTEND_VLAN, port: int = 80) -> Probes:
        return cls([(cluster.pin_dirs[name], ns, ifname) for name, ns, ifname in cluster.lbns], vlan, port)

    def forwarding(self, vip: str) -> list[bool]:
        frame = {mac: probe_frame(mac, vip, self.port, "tcp", self.vlan) for _, mac in self.progs}
        return [run_probe(prog, frame[mac]).forwarded for prog, mac in self.progs]

    def close(self) -> None:
        for prog, _ in self.progs:
            prog.close()
