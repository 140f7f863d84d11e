"""The program's own cost per frame, VLAN scenario A vs VXLAN, without a network.

The throughput trials read a DUT's cost as the difference of two rates that
move ±10-20 % with the machine's load, so a difference of a few ns between
two DUTs drowns in their spread. This measures the program alone, as the
kernel times it: BPF_PROG_TEST_RUN with `repeat` runs the program that many
times on one frame and reports the mean ns per run (the figure
run_time_ns / run_cnt of kernel.bpf_stats_enabled gives, which the
throughput trials cannot have on: it costs every run a timestamp pair).

BPF_PROG_TEST_RUN runs each repetition on the frame as the previous one left
it, so the rig makes the rewrite a fixed point and every repetition takes
the whole forwarding path: the VLAN service's backend is this node's own MAC
on the frontend VLAN; the VXLAN service's backends (distinct inner MACs, as
the program never reads the inner destination) are on the frontend VNI
behind this node's own endpoint, with its own MAC as the next hop. Frames
are 64 bytes (the VXLAN ones: a 64-byte inner frame in 50 bytes of
encapsulation, without outer UDP checksum, as `xdsr-vxlan` sends them), one
flow per run, all in cache: this is the cost of the instructions, which
the throughput trials show with the caches' and the veth's on top.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from xdsr.bench.scenarios import FRONTEND_VLAN, FRONTEND_VNI, LB_VTEP, PORT
from xdsr.bench.spread import Spread
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.config import parse_config
from xdsr.dataplane.loader import Dataplane, TunnelEndpoint, ensure_bpffs, remove_pins
from xdsr.dataplane.state import apply
from xdsr.paths import bpf_object

LBN_MAC = "02:00:00:00:00:aa"
PEER_MAC = "02:00:00:00:00:01"
VIP = "198.18.0.1"
N_VXLAN_BACKENDS = 255  # as scenario A (the VLAN rig can have one: the node's MAC on one VLAN)
INNER_SIZE = 64  # bytes with FCS, as the throughput trials' 64-byte point


@dataclass
class ProtoCost:
    noop_ns: Spread  # a program that returns XDP_TX: the test run's own cost
    vlan_ns: Spread  # xdsr, VLAN scenario A's path
    vxlan_ns: Spread  # xdsr, the VXLAN scenario's path
    vxlan_over_vlan_ns: Spread  # paired by round: what VXLAN adds over VLAN


def rig_config(vxlan: bool) -> dict[str, object]:
    """The services of the fixed-point rig (see the module's docstring)."""
    if vxlan:
        backends = [
            {"mac": f"02:bb:00:00:{i >> 8:02x}:{i & 0xFF:02x}", "vni": FRONTEND_VNI, "vtep": LB_VTEP}
            for i in range(N_VXLAN_BACKENDS)
        ]
        segment = {"type": "vxlan", "id": FRONTEND_VNI}
    else:
        backends = [{"mac": LBN_MAC, "vlan": FRONTEND_VLAN}]
        segment = {"type": "vlan", "id": FRONTEND_VLAN}
    return {
        "services": [
            {"vip": VIP, "port": PORT, "protocol": p, "segment": segment, "backends": backends} for p in ("udp", "tcp")
        ]
    }


def _pad(p: Packet, size: int) -> Packet:
    return p / Raw(b"\0" * max(0, size - 4 - len(p)))  # the size counts the 4-byte FCS


def rig_frames(vxlan: bool, proto: str, n: int, seed: int = 1) -> list[bytes]:
    """n frames of distinct flows to the rig's VIP."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        l4 = (UDP if proto == "udp" else TCP)(sport=rng.randrange(1024, 65536), dport=PORT)
        ip = IP(src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", dst=VIP) / l4
        if vxlan:
            inner = _pad(Ether(dst="02:0a:00:00:00:01", src=PEER_MAC) / ip, INNER_SIZE)
            udp = UDP(sport=rng.randrange(49152, 65536), dport=4789, chksum=0)
            frame = Ether(dst=LBN_MAC, src=PEER_MAC) / IP(src="192.0.2.250", dst=LB_VTEP) / udp
            frame = frame / VXLAN(vni=FRONTEND_VNI, flags=0x08) / inner
        else:
            frame = _pad(Ether(dst=LBN_MAC, src=PEER_MAC) / Dot1Q(vlan=FRONTEND_VLAN) / ip, INNER_SIZE)
        out.append(bytes(frame))
    return out


def ns_per_run(prog: bpf.Program, frames: list[bytes], repeat: int) -> float:
    """Mean over the frames of the kernel-timed ns per run; every run must
    forward (the rig's fixed point holds), or the figure would be another path's."""
    total = 0
    for f in frames:
        verdict, _, ns = prog.test_run(f, repeat=repeat, out_size=0)
        if verdict != bpf.XDP_TX:
            raise RuntimeError(f"the program's verdict was {verdict}, not XDP_TX: the rig is not a fixed point")
        total += ns
    return total / len(frames)


@contextmanager
def rig_programs() -> Iterator[dict[str, bpf.Program]]:
    """The no-op XDP_TX program and xdsr loaded on the VLAN and on the VXLAN
    rig (each its own maps under a private pin directory, removed after)."""
    with ExitStack() as stack:
        progs: dict[str, bpf.Program] = {}
        noop = bpf.load_program(str(bpf_object("xdp_tx")), "xdp_tx")
        stack.callback(noop.close)
        progs["noop"] = noop
        for key, vxlan in (("vlan", False), ("vxlan", True)):
            pin = Path(f"/sys/fs/bpf/xdsr-progcost-{uuid.uuid4().hex[:8]}")
            ensure_bpffs(pin)
            stack.callback(remove_pins, pin)
            dp = stack.enter_context(Dataplane.create_or_open(pin, max_services=16))
            apply(dp, parse_config(rig_config(vxlan)).to_services(LBN_MAC if vxlan else None))
            prog = dp.load_program(LBN_MAC, tunnel=TunnelEndpoint(vtep4=ipaddress.IPv4Address(LB_VTEP)))
            stack.callback(prog.close)
            progs[key] = prog
        yield progs


def measure(
    protos: tuple[str, ...] = ("udp", "tcp"), rounds: int = 7, repeat: int = 2000, flows: int = 64
) -> dict[str, ProtoCost]:
    """Per protocol: min/median/max over rounds of each program's mean ns
    per run; the three programs take turns within a round."""
    out: dict[str, ProtoCost] = {}
    with rig_programs() as progs:
        for proto in protos:
            vlan, vxlan = rig_frames(False, proto, flows), rig_frames(True, proto, flows)
            xs: dict[str, list[float]] = {"noop": [], "vlan": [], "vxlan": []}
            for _ in range(rounds):
                xs["noop"].append(ns_per_run(progs["noop"], vlan, repeat))
                xs["vlan"].append(ns_per_run(progs["vlan"], vlan, repeat))
                xs["vxlan"].append(ns_per_run(progs["vxlan"], vxlan, repeat))
            out[proto] = ProtoCost(
                noop_ns=Spread.of(xs["noop"]),
                vlan_ns=Spread.of(xs["vlan"]),
                vxlan_ns=Spread.of(xs["vxlan"]),
                vxlan_over_vlan_ns=Spread.of([v - a for a, v in zip(xs["vlan"], xs["vxlan"], strict=True)]),
            )
    return out


def to_dict(costs: dict[str, ProtoCost]) -> dict[str, object]:
    return {proto: asdict(c) for proto, c in costs.items()}
