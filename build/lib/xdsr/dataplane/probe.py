"""Ask the running data plane what it does with a packet, without sending
one: the attached program itself runs on a made-up frame (BPF_PROG_TEST_RUN).

`xdsr dp probe` uses it to answer "where does this flow go?", and the tests
and benchmarks to tell the moment a node forwards a service.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.loader import prog_pin_name
from xdsr.dataplane.netns import link


@dataclass(frozen=True)
class ProbeResult:
    verdict: str  # XDP_TX, XDP_PASS, XDP_DROP
    backend_mac: str | None = None  # for XDP_TX: where the frame went
    backend_vlan: int | None = None

    @property
    def forwarded(self) -> bool:
        return self.verdict == "XDP_TX"


def probe_frame(
    lbn_mac: str, vip: str, port: int, protocol: str, vlan: int, src: str | None = None, sport: int = 40000
) -> bytes:
    v = ipaddress.ip_address(vip)
    if src is None:
        src = "198.51.100.1" if v.version == 4 else "2001:db8:ffff::1"
    l3 = IP(src=src, dst=vip) if v.version == 4 else IPv6(src=src, dst=vip)
    l4 = TCP(sport=sport, dport=port, flags="S") if protocol == "tcp" else UDP(sport=sport, dport=port)
    eth = Ether(dst=lbn_mac, src="02:00:00:00:00:fe")
    frame = eth / Dot1Q(vlan=vlan) / l3 / l4 if vlan else eth / l3 / l4
    return bytes(frame)


def run_probe(prog: bpf.Program, frame: bytes) -> ProbeResult:
    verdict, out, _ = prog.test_run(frame)
    name = bpf.XDP_ACTION_NAMES.get(verdict, str(verdict))
    if verdict != bpf.XDP_TX:
        return ProbeResult(name)
    parsed = Ether(out)
    vlan = parsed[Dot1Q].vlan if parsed.haslayer(Dot1Q) else 0
    return ProbeResult(name, parsed.dst, vlan)


def attached_program(pin_dir: str | Path, ifname: str, netns: str | None = None) -> tuple[bpf.Program, str]:
    """The program xdsr attached to ifname (from its pin) and the interface's MAC."""
    return bpf.Program.from_pin(str(Path(pin_dir) / prog_pin_name(ifname, netns))), link(ifname, netns).mac
