"""`xdsr bench rfc2544`: the paper's RFC 2544 and IMIX throughput tests
(Table 2, Figs. 5-10) on this machine; see docs/benchmarks.md."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_SIZES = "64,512,1510"
DEFAULT_TRIALS = 3
DEFAULT_SECONDS = 1.0
DEFAULT_SLICES = 2
FULL_TRIALS = 5
FULL_SECONDS = 3.0
FULL_SLICES = 4


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{what}: comma-separated integers, got {text!r}") from None


def rfc2544(
    sizes: Annotated[
        str | None,
        typer.Option(help=f"frame sizes in bytes, FCS included (default {DEFAULT_SIZES}; --full: all seven)"),
    ] = None,
    imix: Annotated[
        bool | None, typer.Option("--imix/--no-imix", help="also IMIX (40/576/1500-byte IP packets, 7:4:1)")
    ] = None,
    proto: Annotated[str, typer.Option(help="protocols: udp, tcp (TCP frames are SYNs)")] = "udp,tcp",
    trials: Annotated[
        int | None, typer.Option(help=f"trials per point and DUT (default {DEFAULT_TRIALS}; --full {FULL_TRIALS})")
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(help=f"measured seconds per trial (default {DEFAULT_SECONDS:g}; --full {FULL_SECONDS:g})"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="directory for report.md, results.json and the figures")
    ] = None,
    full: Annotated[bool, typer.Option(help="all sizes, both protocols, IMIX, more and longer trials")] = False,
    cpu: Annotated[int | None, typer.Option(help="CPU for the generator (default: the highest available)")] = None,
    duts: Annotated[
        str,
        typer.Option(
            help="devices under test: loopback, dnat, xdsr-a, xdsr-b, loopback-vxlan and xdsr-vxlan (scenario A "
            "behind VXLAN, and the loopback of its frames); and broken, a loopback that corrupts every 4th frame "
            "(to see the rewrite check fail the run)"
        ),
    ] = "loopback,dnat,xdsr-a,xdsr-b,loopback-vxlan,xdsr-vxlan",
    flows: Annotated[
        int, typer.Option(help="0: a new flow every frame; 2^k: repeat 2^k flows (conntrack hits for DNAT)")
    ] = 0,
    warmup: Annotated[float, typer.Option(help="warm-up seconds before each slice")] = 0.05,
    slices: Annotated[
        int | None,
        typer.Option(help=f"turns the DUTs take within a trial (default {DEFAULT_SLICES}; --full {FULL_SLICES})"),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="frames per BPF_PROG_TEST_RUN batch (1-256)")] = 64,
    plots: Annotated[bool, typer.Option(help="write the PNG figures")] = True,
    program_cost: Annotated[
        bool,
        typer.Option(
            help="with xdsr-a and xdsr-vxlan: also time the program alone on their frames (BPF_PROG_TEST_RUN, "
            "no network), the less noisy figure of what VXLAN adds over VLAN"
        ),
    ] = True,
) -> None:
    """RFC 2544 and IMIX throughput: loopback, iptables DNAT and xdsr (scenarios A and B), side by side.

    Exits 1 if any frame came back wrong (or a DUT returned nothing), 2 if the
    run cannot start (not root, kernel.bpf_stats_enabled on, bad options).
    """
    from xdsr.bench.rfc2544 import plots as figs
    from xdsr.bench.rfc2544 import report
    from xdsr.bench.rfc2544.duts import ALL_DUT_KEYS
    from xdsr.bench.rfc2544.frames import RFC2544_SIZES
    from xdsr.bench.rfc2544.harness import BenchConfig, BenchError, Point, Runner, Trial

    dut_keys = tuple(d.strip() for d in duts.split(",") if d.strip())
    for d in dut_keys:
        if d not in ALL_DUT_KEYS:
            raise typer.BadParameter(f"unknown DUT {d!r} (one of {', '.join(ALL_DUT_KEYS)})", param_hint="--duts")
    cfg = BenchConfig(
        sizes=_ints(sizes, "--sizes") if sizes is not None else (RFC2544_SIZES if full else _ints(DEFAULT_SIZES, "")),
        imix=imix if imix is not None else full,
        protos=tuple(p.strip().lower() for p in proto.split(",") if p.strip()),
        trials=trials if trials is not None else (FULL_TRIALS if full else DEFAULT_TRIALS),
        seconds=seconds if seconds is not None else (FULL_SECONDS if full else DEFAULT_SECONDS),
        warmup=warmup,
        slices=slices if slices is not None else (FULL_SLICES if full else DEFAULT_SLICES),
        cpu=cpu,
        batch_size=batch_size,
        duts=dut_keys,
        flows=flows,
    )
    target = out_dir or Path(f"rfc2544-{time.strftime('%Y%m%d-%H%M%S')}")
    command = (
        "xdsr bench rfc2544 " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("rfc2544") + 1 :])
        if ("rfc2544" in sys.argv)
        else "xdsr bench rfc2544"
    )

    points = cfg.points()
    total = len(points) * len(dut_keys) * cfg.trials
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )
    task = progress.add_task("setting up", total=total)
    point_rates: dict[str, list[float]] = {}

    def on_progress(what: str, point: Point | None, dut: str | None, trial: Trial | None) -> None:
        if point is None:
            progress.update(task, description=what)
            return
        if trial is None:
            progress.update(task, description=f"{point.proto.upper()} {point.name:>4} · {dut} · trial")
            return
        progress.advance(task)
        point_rates.setdefault(dut or "", []).append(trial.pps)
        flag = f" [red]{trial.wrong} WRONG[/red]" if trial.wrong else ""
        progress.console.print(
            f"  {point.proto.upper()} {point.name:>4}  {dut:<9} trial {trial.index + 1}: "
            f"{trial.pps / 1e6:7.3f} Mpps  {trial.l2_bps / 1e9:6.2f} Gbps L2  loss {trial.loss:.2%}{flag}",
            highlight=False,
        )

    runner = Runner(cfg, progress=on_progress)
    out.print(
        f"RFC 2544: {len(points)} points x {len(dut_keys)} DUTs x {cfg.trials} trials x {cfg.seconds:g} s, "
        f"generator on CPU {runner.cpu}",
        highlight=False,
    )
    try:
        with progress:
            results = runner.run(install_signal_handlers=True)
    except BenchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; everything the run created was removed[/yellow]")
        raise typer.Exit(130) from None

    if program_cost and "xdsr-a" in dut_keys and "xdsr-vxlan" in dut_keys:
        from xdsr.bench.rfc2544 import progcost

        out.print("timing the program alone (VLAN A vs VXLAN, BPF_PROG_TEST_RUN)", highlight=False)
        results.program_cost = progcost.to_dict(progcost.measure(cfg.protos))
    if results.bpf_stats_after not in ("0", "?"):
        err.print(
            "[yellow]warning: kernel.bpf_stats_enabled was turned on during the run; the figures are skewed[/yellow]"
        )
    names = figs.write_figures(results, target) if plots else []
    md, js = report.write(results, target, names, command)

    t = Table(title="64-byte frames (median Mpps) and xdsr vs loopback", title_justify="left")
    t.add_column("proto")
    for k in report.dut_order(results):
        t.add_column(report.short_label(results, k), justify="right")
    comps = report.comparisons(results)
    for pr in cfg.protos:
        p = Point(pr, 64)
        if 64 not in cfg.sizes:
            break
        row = [pr.upper()]
        for k in report.dut_order(results):
            s = results.get(k, p)
            row.append(f"{report.spread_of(s, lambda x: x.pps).median / 1e6:.3f}" if s and s.trials else "-")
        t.add_row(*row)
        for k in ("xdsr-a", "xdsr-b"):
            c = report.find(comps, p, k, report.BASELINE)
            if c and c.ratio and c.added_ns:
                t.add_row(
                    f"  {report.short_label(results, k)}",
                    *([""] * (len(report.dut_order(results)) - 1)),
                    f"{c.ratio.median:.2f} of loopback, +{c.added_ns.median:.1f} ns",
                )
    if 64 in cfg.sizes:
        out.print(t)
    for tc in report.targets(results):
        mark = "[green]met[/green]" if tc.met else "[red]not met[/red]"
        out.print(f"target {tc.what} {tc.proto.upper()}: {tc.target}, measured {tc.measured}: {mark}", highlight=False)
    out.print(f"wrote {md}, {js}" + (f" and {len(names)} figures" if names else ""), highlight=False)
    failed = results.failed_series
    if failed:
        err.print(
            "[red]FAIL:[/red] wrong or missing frames in "
            + ", ".join(f"{s.dut} {s.point.proto} {s.point.name} ({s.wrong} wrong)" for s in failed)
        )
        raise typer.Exit(1)
