"""Cost of the data plane without a network: `xdsr bench dataplane`.

* ns per packet of the xdsr program and of a no-op XDP_TX program, through
  BPF_PROG_TEST_RUN, side by side in one run, for scenarios A and B;
* Maglev build time for 65537 slots and 1000 backends;
* memory the kernel charges for the maps at 4096 services.

BPF_PROG_TEST_RUN runs the program on one packet `repeat` times, so the
packet's table slot stays in cache: these figures are the cost of the
instructions. The throughput benchmark (`xdsr bench rfc2544`) sends random
flows over a veth and shows what the caches do.

Each repetition runs on the frame as the previous one left it, so a frame
rewritten for a backend would take the short "not for this node" path from
the second repetition on (a few ns: what this bench reported before). So
each VIP's first backend is this node itself on the frontend VLAN, and the
frames measured are flows Maglev sends to it: the rewrite is then a fixed
point and every repetition takes the whole forwarding path, over the
scenario's own tables (255 backends per table in A, 128 tables in B).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from xdsr.bench.rfc2544.progcost import ns_per_run
from xdsr.bench.scenarios import FRONTEND_VLAN, PORT, SCENARIOS, Scenario
from xdsr.bench.spread import Spread
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.config import parse_config
from xdsr.dataplane.loader import Dataplane, ensure_bpffs, remove_pins
from xdsr.dataplane.model import Service
from xdsr.dataplane.state import apply, installed
from xdsr.maglev.measure import bench_build
from xdsr.paths import bpf_object

LBN_MAC = "02:00:00:00:00:aa"


def frames(scenario: Scenario, n: int, size: int = 64, seed: int = 1) -> Iterator[bytes]:
    """UDP frames of `size` bytes (with FCS) to random VIPs of the scenario,
    each a new random flow; n of them, or endless with n = 0."""
    rng = random.Random(seed)
    vips = scenario.vips()
    made = 0
    while n == 0 or made < n:
        p = (
            Ether(dst=LBN_MAC, src="02:00:00:00:00:01")
            / Dot1Q(vlan=FRONTEND_VLAN)
            / IP(src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", dst=rng.choice(vips))
            / UDP(sport=rng.randrange(1024, 65536), dport=PORT)
        )
        pad = size - 4 - len(p)  # the wire size counts the 4-byte FCS
        yield bytes(p / Raw(b"\0" * max(pad, 0)))
        made += 1


def fixed_point_services(scenario: Scenario) -> list[Service]:
    """The scenario's services with each VIP's first backend replaced by this
    node on the frontend VLAN (see the module's docstring)."""
    cfg = scenario.config()
    for svc in cfg["services"]:  # type: ignore[union-attr]
        svc["backends"] = [{"mac": LBN_MAC, "vlan": FRONTEND_VLAN}, *svc["backends"][1:]]
    return parse_config(cfg).to_services()


def fixed_point_frames(prog: bpf.Program, scenario: Scenario, n: int, limit: int = 200_000) -> list[bytes]:
    """n frames of distinct flows that the loaded program forwards to this
    node itself, as it rewrites them (so the rewrite leaves them unchanged);
    the program is the oracle for Maglev's choice."""
    me = bytes.fromhex(LBN_MAC.replace(":", ""))
    out: list[bytes] = []
    for tried, f in enumerate(frames(scenario, 0)):
        if tried == limit:
            raise RuntimeError(f"scenario {scenario.name}: {len(out)} of {n} flows to this node in {limit} tries")
        verdict, rewritten, _ = prog.test_run(f)
        if verdict != bpf.XDP_TX or rewritten[:6] != me:
            continue
        again, same, _ = prog.test_run(rewritten)
        if again == bpf.XDP_TX and same == rewritten:
            out.append(rewritten)
            if len(out) == n:
                return out
    raise AssertionError("unreachable: frames() is endless")


def prog_cost(rounds: int = 7, repeat: int = 20000, n_flows: int = 64) -> dict[str, object]:
    noop = bpf.load_program(str(bpf_object("xdp_tx")), "xdp_tx")
    results: dict[str, object] = {}
    try:
        for sc in SCENARIOS:
            pin = Path(f"/sys/fs/bpf/xdsr-bench-{uuid.uuid4().hex[:8]}")
            ensure_bpffs(pin)
            try:
                with Dataplane.create_or_open(pin, max_services=512) as dp:
                    apply(dp, fixed_point_services(sc))
                    prog = dp.load_program(LBN_MAC)
                    try:
                        pkts = fixed_point_frames(prog, sc, n_flows)
                        xs, ns = [], []
                        for _ in range(rounds):
                            # Interleaved, so both see the same machine state.
                            xs.append(ns_per_run(prog, pkts, repeat))
                            ns.append(ns_per_run(noop, pkts, repeat))
                    finally:
                        prog.close()
                    added = [x - n for x, n in zip(xs, ns, strict=True)]
                    results[sc.name] = {
                        "scenario": sc.label,
                        "xdsr_ns": asdict(Spread.of(xs)),
                        "noop_xdp_tx_ns": asdict(Spread.of(ns)),
                        "added_ns": asdict(Spread.of(added)),
                    }
            finally:
                remove_pins(pin)
    finally:
        noop.close()
    return results


def map_memory(n_services: int = 4096, backends_per_service: tuple[int, ...] = (10, 32)) -> list[dict[str, object]]:
    """Bytes the kernel charges for the maps with n_services installed.

    The slot and backend arrays are preallocated (their size is a limit set
    at creation), so the figure is the maps' total, and how much of the
    arrays the tables use.
    """
    out = []
    for nb in backends_per_service:
        cfg = {
            "services": [
                {
                    "vip": f"10.{i >> 8}.{i & 0xFF}.1",
                    "port": 80,
                    "protocol": "tcp",
                    "backends": [{"mac": f"02:cc:00:{j:02x}:{i >> 8:02x}:{i & 0xFF:02x}"} for j in range(nb)],
                }
                for i in range(n_services)
            ]
        }
        services = parse_config(cfg).to_services()
        pin = Path(f"/sys/fs/bpf/xdsr-bench-{uuid.uuid4().hex[:8]}")
        ensure_bpffs(pin)
        try:
            with Dataplane.create_or_open(pin, max_services=n_services) as dp:
                t0 = time.perf_counter()
                apply(dp, services)
                took = time.perf_counter() - t0
                used = sum(s.memory for s in installed(dp))
                maps = sum(m.memlock() for m in dp.maps.values())
                limits = dp.limits
            out.append(
                {
                    "services": n_services,
                    "backends_per_service": nb,
                    "table_size": services[0].table_size,
                    "tables_bytes": used,
                    "total_bytes": maps,
                    "limits": {
                        "max_services": limits.max_services,
                        "table_memory": limits.table_memory,
                        "max_backends": limits.max_backends,
                    },
                    "apply_seconds": took,
                }
            )
        finally:
            remove_pins(pin)
    return out


def maglev_build(repeat: int = 7) -> dict[str, object]:
    mn, med, mx = bench_build(m=65537, n=1000, repeat=repeat)
    return {"table_size": 65537, "backends": 1000, "seconds": {"min": mn, "median": med, "max": mx}}


def stats_enabled() -> bool:
    return Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() != "0"
