"""PNG figures like the paper's Figs. 5-10 (matplotlib, Agg backend).

Bars are medians over the trials, whiskers min and max.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xdsr.bench.rfc2544.harness import Point, Results, Trial
from xdsr.bench.rfc2544.report import dut_order, short_label, spread_of

COLORS = {"loopback": "#4c72b0", "dnat": "#c44e52", "xdsr-a": "#55a868", "xdsr-b": "#8172b2"}
DPI = 100
SIZE = (7.0, 3.6)


def _grouped(
    results: Results,
    path: Path,
    groups: list[tuple[str, Point]],
    metric: Callable[[Trial], float],
    scale: float,
    ylabel: str,
    title: str,
    xlabel: str,
) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in dut_order(results) if any(results.get(k, p) for _, p in groups)]
    if not keys or not groups:
        return False
    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    width = 0.8 / len(keys)
    top = 0.0
    for i, k in enumerate(keys):
        xs, ys, lo, hi = [], [], [], []
        for g, (_, p) in enumerate(groups):
            s = results.get(k, p)
            if s is None or not s.trials:
                continue
            sp = spread_of(s, metric)
            xs.append(g + (i - (len(keys) - 1) / 2) * width)
            ys.append(sp.median * scale)
            lo.append((sp.median - sp.min) * scale)
            hi.append((sp.max - sp.median) * scale)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=short_label(results, k), color=COLORS.get(k))
        top = max([top, *(y + h for y, h in zip(ys, hi, strict=True))])
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, top * 1.2 or 1)  # room for the legend above the bars
    ax.legend(fontsize=8, ncols=min(4, len(keys)), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def write_figures(results: Results, out_dir: Path) -> list[str]:
    """Write every figure the run has data for; returns their file names."""
    cfg = results.config
    made = []

    def sizes(proto: str) -> list[tuple[str, Point]]:
        return [(str(s), Point(proto, s)) for s in cfg.sizes] if proto in cfg.protos else []

    specs: list[tuple[str, list[tuple[str, Point]], Callable[[Trial], float], float, str, str, str]] = [
        (
            "fig5_udp_l2_bps.png",
            sizes("udp"),
            lambda t: t.l2_bps,
            1e-9,
            "Gbps (L2)",
            "UDP throughput, L2, per frame size (Fig. 5)",
            "frame size (bytes)",
        ),
        (
            "fig6_udp_l1_bps.png",
            sizes("udp"),
            lambda t: t.l1_bps,
            1e-9,
            "Gbps (L1)",
            "UDP throughput, L1, per frame size (Fig. 6)",
            "frame size (bytes)",
        ),
        (
            "fig7_tcp_l2_bps.png",
            sizes("tcp"),
            lambda t: t.l2_bps,
            1e-9,
            "Gbps (L2)",
            "TCP SYN throughput, L2, per frame size (Fig. 7)",
            "frame size (bytes)",
        ),
        (
            "fig8_udp_pps.png",
            sizes("udp"),
            lambda t: t.pps,
            1e-6,
            "Mpps",
            "UDP throughput in packets, per frame size (Fig. 8)",
            "frame size (bytes)",
        ),
    ]
    if cfg.imix:
        imix = [(p.upper(), Point(p, None)) for p in cfg.protos]
        specs += [
            (
                "fig9_imix_l2_bps.png",
                imix,
                lambda t: t.l2_bps,
                1e-9,
                "Gbps (L2)",
                "IMIX throughput, L2 (Fig. 9)",
                "protocol",
            ),
            (
                "fig9_imix_l1_bps.png",
                imix,
                lambda t: t.l1_bps,
                1e-9,
                "Gbps (L1)",
                "IMIX throughput, L1 (Fig. 9)",
                "protocol",
            ),
            (
                "fig10_imix_pps.png",
                imix,
                lambda t: t.pps,
                1e-6,
                "Mpps",
                "IMIX throughput in packets (Fig. 10)",
                "protocol",
            ),
        ]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, groups, metric, scale, ylabel, title, xlabel in specs:
        if groups and _grouped(results, out_dir / name, groups, metric, scale, ylabel, title, xlabel):
            made.append(name)
    return made
