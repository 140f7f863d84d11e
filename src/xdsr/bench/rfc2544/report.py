"""Summaries of an RFC 2544 run: spreads, ratios, targets, the Markdown
report shaped like the paper's Table 2, and the JSON with every raw figure."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from xdsr.bench.rfc2544.frames import imix_mean_wire_size
from xdsr.bench.rfc2544.harness import Point, Results, Series, Trial
from xdsr.bench.spread import Spread

BASELINE = "loopback"
KERNEL = "dnat"

# The goals set for xdsr (64-byte frames), and what a straightforward XDP
# implementation of the same job measured on such a harness, for reference.
TARGET_A_ADDED_NS = 25.0
TARGET_VXLAN_ADDED_NS = 10.0  # issue 15: VXLAN adds at most this over scenario A
TARGET_A_RATIO = 0.89
TARGET_B_VS_A = 0.95
REFERENCE = {
    "loopback_mpps": 4.9,
    "dnat_mpps": 0.65,
    "straightforward_a_added_ns": 35.0,
    "straightforward_a_ratio": 0.86,
    "straightforward_b_added_ns": 60.0,
    "straightforward_b_ratio": 0.77,
}


def dut_order(results: Results) -> list[str]:
    known = ["loopback", "dnat", "xdsr-a", "xdsr-b", "loopback-vxlan", "xdsr-vxlan"]
    keys = list(results.duts)
    return [k for k in known if k in keys] + [k for k in keys if k not in known]


def label(results: Results, key: str) -> str:
    return str(results.duts.get(key, {}).get("label", key))


def short_label(results: Results, key: str) -> str:
    return {
        "loopback": "Loopback",
        "dnat": "DNAT",
        "xdsr-a": "xdsr A",
        "xdsr-b": "xdsr B",
        "xdsr-vxlan": "xdsr VXLAN",
    }.get(key, label(results, key))


def spread_of(series: Series, metric: Callable[[Trial], float]) -> Spread:
    return Spread.of([metric(t) for t in series.trials])


def paired(a: Series, b: Series, fn: Callable[[Trial, Trial], float]) -> Spread | None:
    """fn over trials of a and b paired by index (they ran in the same round)."""
    vals = [fn(x, y) for x, y in zip(a.trials, b.trials, strict=False) if x.pps > 0 and y.pps > 0]
    return Spread.of(vals) if vals else None


def ratio(a: Series, b: Series) -> Spread | None:
    return paired(a, b, lambda x, y: x.pps / y.pps)


def added_ns(a: Series, base: Series) -> Spread | None:
    """Cost per packet that a adds over base: 1/pps - 1/pps_base, in ns."""
    return paired(a, base, lambda x, y: 1e9 / x.pps - 1e9 / y.pps)


@dataclass(frozen=True)
class Comparison:
    point: Point
    dut: str
    vs: str
    ratio: Spread | None
    added_ns: Spread | None


def comparisons(results: Results) -> list[Comparison]:
    out = []
    order = dut_order(results)
    for point in results.config.points():
        base = results.get(BASELINE, point)
        kern = results.get(KERNEL, point)
        for key in order:
            s = results.get(key, point)
            if s is None:
                continue
            if base is not None and key != BASELINE:
                out.append(Comparison(point, key, BASELINE, ratio(s, base), added_ns(s, base)))
            if kern is not None and key not in (BASELINE, KERNEL):
                out.append(Comparison(point, key, KERNEL, ratio(s, kern), None))
        a, b = results.get("xdsr-a", point), results.get("xdsr-b", point)
        if a is not None and b is not None:
            out.append(Comparison(point, "xdsr-b", "xdsr-a", ratio(b, a), added_ns(b, a)))
        v = results.get("xdsr-vxlan", point)
        if a is not None and v is not None:
            out.append(Comparison(point, "xdsr-vxlan", "xdsr-a", ratio(v, a), added_ns(v, a)))
        lv = results.get("loopback-vxlan", point)
        if v is not None and lv is not None:
            out.append(Comparison(point, "xdsr-vxlan", "loopback-vxlan", ratio(v, lv), added_ns(v, lv)))
        if v is not None and lv is not None and a is not None and base is not None:
            # The data plane's own cost of VXLAN over VLAN: each over the
            # loopback of its own frames, paired by trial.
            extra = paired_quad(v, lv, a, base)
            out.append(Comparison(point, "xdsr-vxlan", "xdsr-a (own loopbacks)", None, extra))
    return out


def paired_quad(v: Series, lv: Series, a: Series, base: Series) -> Spread | None:
    """(v over lv) - (a over base), in ns per packet, trials paired by index."""
    vals = [
        (1e9 / w.pps - 1e9 / x.pps) - (1e9 / y.pps - 1e9 / z.pps)
        for w, x, y, z in zip(v.trials, lv.trials, a.trials, base.trials, strict=False)
        if min(w.pps, x.pps, y.pps, z.pps) > 0
    ]
    return Spread.of(vals) if vals else None


def find(comps: list[Comparison], point: Point, dut: str, vs: str) -> Comparison | None:
    for c in comps:
        if c.point == point and c.dut == dut and c.vs == vs:
            return c
    return None


@dataclass(frozen=True)
class TargetCheck:
    what: str
    proto: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def targets(results: Results) -> list[TargetCheck]:
    comps = comparisons(results)
    out = []
    for proto in results.config.protos:
        p = Point(proto, 64)
        if 64 not in results.config.sizes:
            continue
        c = find(comps, p, "xdsr-a", BASELINE)
        if c and c.added_ns:
            out.append(
                TargetCheck(
                    "xdsr A: cost added over loopback (ns/packet)",
                    proto,
                    f"≤ {TARGET_A_ADDED_NS:.0f}",
                    c.added_ns.fmt(digits=1),
                    c.added_ns.median <= TARGET_A_ADDED_NS,
                )
            )
        if c and c.ratio:
            out.append(
                TargetCheck(
                    "xdsr A ÷ loopback (pps)",
                    proto,
                    f"≥ {TARGET_A_RATIO:.2f}",
                    c.ratio.fmt(),
                    c.ratio.median >= TARGET_A_RATIO,
                )
            )
        c = find(comps, p, "xdsr-vxlan", "xdsr-a (own loopbacks)") or find(comps, p, "xdsr-vxlan", "xdsr-a")
        if c and c.added_ns:
            out.append(
                TargetCheck(
                    f"xdsr VXLAN: cost added over xdsr A (ns/packet; vs {c.vs})",
                    proto,
                    f"≤ {TARGET_VXLAN_ADDED_NS:.0f}",
                    c.added_ns.fmt(digits=1),
                    c.added_ns.median <= TARGET_VXLAN_ADDED_NS,
                )
            )
        pc = (results.program_cost or {}).get(proto)
        if isinstance(pc, dict):
            over = pc["vxlan_over_vlan_ns"]
            out.append(
                TargetCheck(
                    "xdsr VXLAN: the program's own cost over VLAN A (ns/packet; BPF_PROG_TEST_RUN)",
                    proto,
                    f"≤ {TARGET_VXLAN_ADDED_NS:.0f}",
                    f"{over['median']:.1f} ({over['min']:.1f}-{over['max']:.1f})",
                    over["median"] <= TARGET_VXLAN_ADDED_NS,
                )
            )
        c = find(comps, p, "xdsr-b", "xdsr-a")
        if c and c.ratio:
            out.append(
                TargetCheck(
                    "xdsr B ÷ xdsr A (pps)",
                    proto,
                    f"≥ {TARGET_B_VS_A:.2f}",
                    c.ratio.fmt(),
                    c.ratio.median >= TARGET_B_VS_A,
                )
            )
    return out


# -- Markdown ----------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table2(results: Results) -> str:
    """Medians, shaped like the paper's Table 2: BPS (L2, L1) and PPS per DUT."""
    order = dut_order(results)
    header = ["Size", "Proto", "Metric"]
    for k in order:
        header += [f"{short_label(results, k)} L2", f"{short_label(results, k)} L1"]
    rows = []
    for point in results.config.points():
        bps, pps = [point.name, point.proto.upper(), "BPS (Gbps)"], ["", "", "PPS (Mpps)"]
        for k in order:
            s = results.get(k, point)
            if s is None or not s.trials:
                bps += ["-", "-"]
                pps += ["-", ""]
                continue
            bps += [
                f"{spread_of(s, lambda t: t.l2_bps).median / 1e9:.2f}",
                f"{spread_of(s, lambda t: t.l1_bps).median / 1e9:.2f}",
            ]
            pps += [f"{spread_of(s, lambda t: t.pps).median / 1e6:.3f}", ""]
        rows += [bps, pps]
    return _md_table(header, rows)


def ratio_table(results: Results) -> str:
    comps = comparisons(results)
    order = [k for k in dut_order(results) if k not in (BASELINE, KERNEL)]
    header = ["Size", "Proto"]
    cols: list[tuple[str, str, str]] = []
    for k in order:
        cols.append((k, BASELINE, "ratio"))
    for k in order:
        cols.append((k, KERNEL, "ratio"))
    if "xdsr-a" in order and "xdsr-b" in order:
        cols.append(("xdsr-b", "xdsr-a", "ratio"))
    if "xdsr-a" in order and "xdsr-vxlan" in order:
        cols.append(("xdsr-vxlan", "xdsr-a", "ns"))
    if "loopback-vxlan" in order and "xdsr-vxlan" in order:
        cols.append(("xdsr-vxlan", "loopback-vxlan", "ns"))
        if "xdsr-a" in order:
            cols.append(("xdsr-vxlan", "xdsr-a (own loopbacks)", "ns"))
    if KERNEL in results.duts:
        cols.insert(0, (KERNEL, BASELINE, "ratio"))
    for k in order:
        cols.append((k, BASELINE, "ns"))
    for k, vs, kind in cols:
        if kind == "ratio":
            header.append(f"{short_label(results, k)} ÷ {short_label(results, vs)}")
        elif vs != BASELINE:
            header.append(
                f"{short_label(results, k)} ns added over {short_label(results, vs) if vs in results.duts else vs}"
            )
        else:
            header.append(f"{short_label(results, k)} ns added")
    rows = []
    for point in results.config.points():
        row = [point.name, point.proto.upper()]
        for k, vs, kind in cols:
            c = find(comps, point, k, vs)
            val = None if c is None else (c.ratio if kind == "ratio" else c.added_ns)
            row.append("-" if val is None else val.fmt(digits=2 if kind == "ratio" else 1))
        rows.append(row)
    return _md_table(header, rows)


def frames_table(results: Results) -> str:
    header = ["Size", "Proto", "DUT", "frames sent", "returned", "loss (max)", "wrong", "pps median (min-max), M"]
    rows = []
    for point in results.config.points():
        for k in dut_order(results):
            s = results.get(k, point)
            if s is None or not s.trials:
                continue
            sent = sum(t.sent for t in s.trials)
            ret = sum(t.returned for t in s.trials)
            loss = max(t.loss for t in s.trials)
            wrong = s.wrong
            wrong_txt = f"**{wrong}** FAIL" if wrong else "0"
            rows.append(
                [
                    point.name,
                    point.proto.upper(),
                    short_label(results, k),
                    f"{sent:,}",
                    f"{ret:,}",
                    f"{loss:.2%}",
                    wrong_txt,
                    spread_of(s, lambda t: t.pps).fmt(1e-6, 3),
                ]
            )
    return _md_table(header, rows)


def targets_table(results: Results) -> str:
    rows = []
    for t in targets(results):
        met = "-" if t.met is None else ("met" if t.met else "**not met**")
        rows.append([t.what, t.proto.upper(), t.target, t.measured, met])
    return _md_table(["target (64-byte frames)", "proto", "target", "measured: median (min-max)", ""], rows)


def program_cost_table(results: Results) -> str:
    def fmt(x: dict[str, float]) -> str:
        return f"{x['median']:.1f} ({x['min']:.1f}-{x['max']:.1f})"

    rows = []
    for proto, pc in (results.program_cost or {}).items():
        if isinstance(pc, dict):
            rows.append(
                [proto.upper()] + [fmt(pc[k]) for k in ("noop_ns", "vlan_ns", "vxlan_ns", "vxlan_over_vlan_ns")]
            )
    return _md_table(["proto", "no-op XDP_TX", "xdsr, VLAN A", "xdsr, VXLAN", "VXLAN over VLAN A"], rows)


def reference_table(results: Results) -> str:
    rows = []
    for proto in results.config.protos:
        p = Point(proto, 64)
        lo, dn = results.get(BASELINE, p), results.get(KERNEL, p)
        if lo and lo.trials:
            rows.append(
                [
                    f"loopback, {proto.upper()}",
                    f"≈ {REFERENCE['loopback_mpps']} Mpps",
                    spread_of(lo, lambda t: t.pps).fmt(1e-6, 3) + " Mpps",
                ]
            )
        if dn and dn.trials:
            rows.append(
                [
                    f"iptables DNAT, {proto.upper()}",
                    f"≈ {REFERENCE['dnat_mpps']} Mpps",
                    spread_of(dn, lambda t: t.pps).fmt(1e-6, 3) + " Mpps",
                ]
            )
    rows.append(
        [
            "straightforward XDP LB, scenario A",
            f"+{REFERENCE['straightforward_a_added_ns']:.0f} ns ({REFERENCE['straightforward_a_ratio']} of loopback)",
            "see targets",
        ]
    )
    rows.append(
        [
            "straightforward XDP LB, scenario B",
            f"+{REFERENCE['straightforward_b_added_ns']:.0f} ns ({REFERENCE['straightforward_b_ratio']} of loopback)",
            "see targets",
        ]
    )
    return _md_table(["reference (64 bytes)", "stated for this machine", "measured here"], rows)


def _loads(v: object) -> str:
    return ", ".join(f"{x:.2f}" for x in v) if isinstance(v, (list, tuple)) else "?"


def markdown(results: Results, figures: Sequence[str] = (), command: str = "") -> str:
    m = results.machine
    cfg = results.config
    failed = results.failed_series
    verdict = (
        "**FAIL**: " + ", ".join(f"{s.dut} {s.point.proto} {s.point.name}" for s in failed)
        if failed
        else "PASS: every frame that came back was rewritten as expected"
    )
    imix_note = ""
    if cfg.imix:
        imix_note = (
            f" IMIX: IP packets of 40, 576 and 1500 bytes in the ratio 7:4:1, mean frame on a wire "
            f"{imix_mean_wire_size(True):.1f} bytes tagged (loopback, xdsr), "
            f"{imix_mean_wire_size(False):.1f} untagged (DNAT)."
        )
    parts = [
        "# RFC 2544 and IMIX throughput: xdsr vs loopback vs iptables DNAT",
        "",
        f"Run {results.started} → {results.finished} ({results.wall_seconds:.0f} s)"
        + (f", `{command}`" if command else "")
        + ".",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m.get('cpu_model')}, {m.get('cpus')} CPUs (virtualized: {m.get('virtualized')}) |",
        f"| kernel | {m.get('kernel')} |",
        f"| NIC | {m.get('nic')} |",
        f"| generator CPU | {m.get('generator_cpu')} (generator, DUT and receiver all run on it) |",
        f"| kernel.bpf_stats_enabled | {m.get('bpf_stats_enabled')} at start, {results.bpf_stats_after} at end |",
        f"| load average (1, 5, 15 min) | {_loads(m.get('load_avg_at_start'))} at start, "
        f"{_loads(m.get('load_avg_at_end'))} at end |",
        f"| commit | {m.get('git_commit')} |",
        "",
        f"{cfg.trials} trials x {cfg.seconds:g} s per point and DUT; each trial split into {cfg.slices} "
        f"slice(s), in which the DUTs take turns (each slice after a {cfg.warmup:g} s warm-up); "
        f"{'a new flow every frame' if not cfg.flows else f'{cfg.flows} flows repeated'}; "
        f"test-run batches of {cfg.batch_size} frames. Frame sizes count the 4-byte FCS (and the 802.1Q tag of "
        "tagged frames), which a veth does not carry: an S-byte frame is S - 4 bytes on the veth. "
        "L2 rate = frames x size x 8; L1 adds 20 bytes per frame (preamble, SFD, inter-frame gap). "
        "Rates are frames *returned* per second of the kernel's own timing of the run." + imix_note,
        "",
        f"Correctness: {verdict}.",
        "",
        "## Throughput (medians), shaped like Table 2",
        "",
        table2(results),
        "",
        "## Ratios and cost added per packet: median (min-max) over trials, paired by round",
        "",
        "ns added = 1/pps - 1/pps(loopback): the DUT's own cost per frame, since the generator, the DUT and "
        "the receiver share one CPU.",
        "",
        ratio_table(results),
        "",
        "## Targets vs measured",
        "",
        targets_table(results) if targets(results) else "(no 64-byte point with loopback and xdsr in this run)",
        "",
        reference_table(results),
        "",
    ]
    if results.program_cost:
        parts += [
            "## The program's own cost: ns per run, median (min-max) over rounds",
            "",
            "BPF_PROG_TEST_RUN with repeat on 64-byte frames (VXLAN: the same inner frame in 50 bytes of "
            "encapsulation), one flow per run, all in cache, the kernel's timing (run_time_ns / run_cnt): "
            "the cost of the instructions alone, without the veth, the generator and the counter, and far "
            "less noisy than a difference of rates. The rig makes every repetition forward "
            "(xdsr.bench.rfc2544.progcost).",
            "",
            program_cost_table(results),
            "",
        ]
    parts += [
        "## Frames: sent, returned, lost, wrong",
        "",
        frames_table(results),
        "",
    ]
    if figures:
        parts += ["## Figures", ""]
        parts += [f"![{f}]({f})" for f in figures]
        parts.append("")
    return "\n".join(parts)


def to_json(results: Results) -> dict[str, object]:
    doc = results.to_dict()
    doc["summary"] = [
        {
            "dut": s.dut,
            "proto": s.point.proto,
            "size": s.point.name,
            "pps": asdict(spread_of(s, lambda t: t.pps)),
            "l2_bps": asdict(spread_of(s, lambda t: t.l2_bps)),
            "l1_bps": asdict(spread_of(s, lambda t: t.l1_bps)),
            "loss": asdict(spread_of(s, lambda t: t.loss)),
            "frames_sent": sum(t.sent for t in s.trials),
            "frames_returned": sum(t.returned for t in s.trials),
            "frames_wrong": s.wrong,
        }
        for s in results.series
        if s.trials
    ]
    doc["comparisons"] = [
        {
            "proto": c.point.proto,
            "size": c.point.name,
            "dut": c.dut,
            "vs": c.vs,
            "ratio": asdict(c.ratio) if c.ratio else None,
            "added_ns": asdict(c.added_ns) if c.added_ns else None,
        }
        for c in comparisons(results)
    ]
    doc["targets"] = [asdict(t) for t in targets(results)]
    doc["reference"] = REFERENCE
    doc["passed"] = not results.failed_series
    return doc


def rounded(obj: object, digits: int = 7) -> object:
    """obj with every float cut to `digits` significant digits: the raw
    counts stay exact, and the file stays a size worth keeping in git."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def write(results: Results, out_dir: Path, figures: Sequence[str] = (), command: str = "") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    js = out_dir / "results.json"
    md.write_text(markdown(results, figures, command))
    js.write_text(json.dumps(rounded(to_json(results)), indent=1) + "\n")
    return md, js
