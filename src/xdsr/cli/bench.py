"""`xdsr bench …`: measurements. Speed targets live here, never in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmarks (need root).", no_args_is_help=True)
out = Console(soft_wrap=True)


def _spread(d: dict[str, float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(d[k] * scale) for k in ("min", "median", "max"))


@app.command()
def dataplane(
    rounds: Annotated[int, typer.Option(help="repetitions of each measurement")] = 7,
    repeat: Annotated[int, typer.Option(help="BPF_PROG_TEST_RUN repetitions per packet")] = 20000,
    memory: Annotated[bool, typer.Option(help="also measure map memory at 4096 services")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every figure to this file")] = None,
) -> None:
    """Per-packet cost (BPF_PROG_TEST_RUN), Maglev build time, map memory."""
    from xdsr.bench import dataplane as bench

    if bench.stats_enabled():
        out.print("[yellow]warning: kernel.bpf_stats_enabled is on; it inflates every figure[/yellow]")
    doc: dict[str, object] = {}
    with out.status("per-packet cost: xdsr vs no-op XDP_TX ..."):
        doc["per_packet"] = bench.prog_cost(rounds=rounds, repeat=repeat)
    t = Table("scenario", "xdsr ns/pkt", "no-op XDP_TX ns/pkt", "added ns/pkt", title="min / median / max")
    for r in doc["per_packet"].values():  # type: ignore[union-attr]
        t.add_row(r["scenario"], _spread(r["xdsr_ns"]), _spread(r["noop_xdp_tx_ns"]), _spread(r["added_ns"]))
    out.print(t)

    with out.status("Maglev build ..."):
        doc["maglev"] = bench.maglev_build(repeat=rounds)
    m = doc["maglev"]
    out.print(f"Maglev build, 65537 slots x 1000 backends: {_spread(m['seconds'], 1000, '{:.2f}')} ms")  # type: ignore[index]

    if memory:
        with out.status("map memory at 4096 services ..."):
            doc["memory"] = bench.map_memory()
        t = Table("services", "backends each", "table size", "tables use MiB", "all maps MiB", "apply s")
        for r in doc["memory"]:  # type: ignore[union-attr]
            t.add_row(
                str(r["services"]),
                str(r["backends_per_service"]),
                str(r["table_size"]),
                f"{r['tables_bytes'] / 2**20:.1f}",
                f"{r['total_bytes'] / 2**20:.1f}",
                f"{r['apply_seconds']:.1f}",
            )
        out.print(t)
    if json_out:
        json_out.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {json_out}")


from xdsr.cli.bench_rfc2544 import rfc2544  # noqa: E402

app.command("rfc2544")(rfc2544)


@app.command("control-plane")
def control_plane(
    runs: Annotated[
        int | None, typer.Option(help="single load balancers created one after another (20; --scale: 3)")
    ] = None,
    members: Annotated[
        int | None, typer.Option(help="members of each single load balancer (255); --scale: of each load balancer (10)")
    ] = None,
    bulk: Annotated[int, typer.Option(help="load balancers created at once for the convergence figure")] = 1000,
    bulk_members: Annotated[int, typer.Option(help="members of each of those")] = 10,
    scale: Annotated[
        str | None,
        typer.Option(help="N[,N...]: fill a group with N load balancers, then measure one change on it"),
    ] = None,
    api: Annotated[
        bool,
        typer.Option(
            "--api",
            help="the API server alone (etcd and the API server, no operator or agents): "
            "--runs rounds of --bulk creates of --bulk-members members by 8 clients, after --existing",
        ),
    ] = False,
    existing: Annotated[int, typer.Option(help="--api: load balancers created before the rounds")] = 1000,
    restart: Annotated[
        bool, typer.Option(help="--scale: last, restart one node with its maps purged and time its resync")
    ] = True,
    profile: Annotated[
        Path | None, typer.Option(help="--scale: py-spy records each process during the fill into this folder")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every figure to this file")] = None,
) -> None:
    """Time from the API call until all 3 LB nodes forward; convergence of many load balancers.
    With --scale: what one change costs on a group of N load balancers.
    With --api: the API server's own creates per second, and its CPU per create."""
    from xdsr.bench import controlplane

    if api:
        r = runs or 3
        with out.status(f"API server alone: {r} x {bulk} creates of {bulk_members} members after {existing} ..."):
            save = (lambda d: json_out.write_text(json.dumps(d, indent=2))) if json_out else None
            doc = controlplane.run_api(existing=existing, creates=bulk, members=bulk_members, rounds=r, progress=save)
        _api_table(doc)
        if json_out:
            json_out.write_text(json.dumps(doc, indent=2))
            out.print(f"wrote {json_out}")
        return
    if scale is not None:
        try:
            scales = [int(x) for x in scale.split(",") if x.strip()]
        except ValueError:
            raise typer.BadParameter("--scale: N[,N...] (numbers of load balancers)") from None
        m, r = members or 10, 3 if runs is None else runs
        with out.status(f"control plane at scale: {scales} load balancers x {m} members ..."):
            # Each scale's figures are written as soon as it is done: a large
            # scale takes many minutes, and a failure there keeps the others.
            save = (lambda d: json_out.write_text(json.dumps(d, indent=2))) if json_out else None
            doc = controlplane.run_scale(
                scales, members=m, runs=r, restart_node=restart, progress=save, profile_dir=profile
            )
        _scale_table(doc)
        if json_out:
            json_out.write_text(json.dumps(doc, indent=2))
            out.print(f"wrote {json_out}")
        return
    runs, members = runs or 20, members or 255
    with out.status(f"control plane: {runs} x 1 LB of {members} members, then {bulk} LBs of {bulk_members} ..."):
        doc = controlplane.run(runs=runs, members=members, bulk=bulk, bulk_members=bulk_members)
    s = doc["single"]
    t = Table("measure", "n", "min", "median", "p99", "max", title="seconds")
    for label, key in (
        ("API call returns", "api_call_s"),
        ("all 3 LB nodes forward", "until_all_nodes_forward_s"),
        ("provisioning_status ACTIVE", "until_provisioning_active_s"),
    ):
        r = s[key]  # type: ignore[index]
        t.add_row(label, str(r["n"]), *(f"{r[k] * 1000:.1f} ms" for k in ("min", "median", "p99", "max")))
    out.print(t)
    b = doc["bulk"]
    out.print(
        f"{b['load_balancers']} load balancers x {b['members_each']} members: API calls done in "  # type: ignore[index]
        f"{b['api_calls_done_s']:.2f} s, every node forwards every VIP after {b['until_all_nodes_forward_all_s']:.2f} s"  # type: ignore[index]
    )
    if json_out:
        json_out.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {json_out}")


def _api_table(doc: dict[str, Any]) -> None:
    t = Table(
        "LBs before",
        "creates/s",
        "API server CPU per create",
        "= creates/s per API server core",
        "etcd CPU per create",
        "clients' CPU per create",
        "load average (1 min)",
        title=f"the API server alone: {doc['creates_per_round']} creates of {doc['members_each']} members, "
        f"{doc['client_workers']} clients (CPU: 10 ms ticks)",
    )
    for r in doc["rounds"]:
        t.add_row(
            str(r["existing_before"]),
            f"{r['creates_per_s']:.0f}",
            f"{r['apiserver_cpu_ms_per_create']:.2f} ms",
            f"{r['apiserver_creates_per_core_s']:.0f}",
            f"{r['etcd_cpu_ms_per_create']:.2f} ms",
            f"{r['client_cpu_ms_per_create']:.2f} ms",
            f"{r['load_average_1m_before']:.1f}",
        )
    out.print(t)


def _scale_table(doc: dict[str, object]) -> None:
    t = Table(
        "LBs x members",
        "change",
        "until every node (min / median / max)",
        "bytes per node",
        "operator CPU",
        "agent CPU",
        "API server CPU",
        "store writes",
        title="one change on a full group (times: min / median / max of the runs; the rest: median; CPU until quiet)",
    )
    labels = (("member_add", "add one member"), ("lb_create", "create one LB"), ("lb_delete", "delete one LB"))
    for sc in doc["scales"]:  # type: ignore[attr-defined]
        for key, label in labels if "member_add" in sc else ():
            med, spread = sc[key], sc.get("spread", {}).get(key, {})
            secs = spread.get("seconds", {"min": med["seconds"], "median": med["seconds"], "max": med["seconds"]})
            t.add_row(
                f"{sc['load_balancers']} x {sc['members_each']}",
                label,
                " / ".join(f"{secs[k] * 1000:.0f}" for k in ("min", "median", "max")) + " ms",
                f"{med['bytes_per_node'] / 1000:.1f} KB",
                f"{med['operator_cpu_s'] * 1000:.0f} ms",
                f"{med['agent_cpu_s'] * 1000:.0f} ms",
                f"{med['apiserver_cpu_s'] * 1000:.0f} ms",
                f"{med['store_writes']:.0f}",
            )
    out.print(t)
    for sc in doc["scales"]:  # type: ignore[attr-defined]
        out.print(
            f"{sc['load_balancers']} x {sc['members_each']}: filled by 8 clients in {sc['fill_api_calls_s']:.2f} s "
            f"({sc['creates_per_s']:.0f} creates/s; API server CPU per create "
            f"{sc.get('fill_apiserver_cpu_ms_per_create', 0):.2f} ms), every node forwards all after "
            f"{sc['fill_until_all_nodes_forward_s']:.2f} s; a restarted node (maps purged) forwards all after "
            + (f"{sc['restarted_node_forwards_all_s']:.2f} s" if sc["restarted_node_forwards_all_s"] else "-")
            + (
                f" ({sc['restarted_node_started_to_forwarding_all_s']:.2f} s after the agent started serving)"
                if sc.get("restarted_node_started_to_forwarding_all_s")
                else ""
            )
        )
        cpu = sc.get("fill_cpu_s")
        if cpu:
            out.print(
                f"  CPU over the fill ({sc['fill_cpu_ms_per_create']:.2f} ms per create in all, load average "
                f"{sc['fill_load_average_1m_before']:.1f} before): "
                + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items())
            )
        counts = sc.get("fill_operator_counts")
        if counts:
            out.print("  the operator over the fill: " + ", ".join(f"{k} {v:.0f}" for k, v in counts.items()))


@app.command("bgp")
def bgp(
    runs: Annotated[int, typer.Option(help="repetitions of each measurement")] = 10,
    conns: Annotated[int, typer.Option(help="TCP connections kept talking during each failover")] = 30,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every figure to this file")] = None,
) -> None:
    """BGP: API create -> announced by all 3 nodes; fault (SIGKILL, link down) -> the router drops the next hop."""
    from xdsr.bench import bgp as bench

    with out.status(f"BGP: {runs} runs of each measurement, BFD on and off ..."):
        doc = bench.run(runs=runs, conns=conns)
    a = doc["announce_s"]
    out.print(f"API create -> announced by all 3 nodes: {_spread(a, 1000)} ms (min / median / max, n={a['n']})")
    t = Table("fault", "detection", "to next hop gone (ms)", "connections lost", title="min / median / max")
    for key, r in doc["failover"].items():
        fault, detection = key.split("/")
        t.add_row(fault, detection, _spread(r["seconds"], 1000), f"{r['lost_total']} of {conns} x {runs}")
    out.print(t)
    if json_out:
        json_out.write_text(json.dumps(doc, indent=2))
        out.print(f"wrote {json_out}")
