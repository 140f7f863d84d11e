"""The data-plane demo: three LB nodes behind an ECMP route, driven directly.

Builds a fabric in network namespaces (two tenants with the same VIP and the
same backend addresses on different VLANs, three LBNs), attaches the XDP
program to every LBN's trunk, gives each LBN the same desired state with
`xdsr dp apply`'s code path, sends real connections and prints what
happened. Everything is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xdsr.dataplane.config import parse_config
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import apply, read_stats
from xdsr.demo.fabric_state import dataplane_config
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric

VIP = "203.0.113.10"


def _forwarded(dps: list[Dataplane]) -> list[int]:
    return [read_stats(dp, services=[]).reasons[0].packets for dp in dps]


def _router_counts(fab: Fabric, tenant: str) -> dict[str, int]:
    """Packets of the VIP's TCP service the tenant's router forwarded, by direction."""
    t = fab.tenant(tenant)
    out = fab.lab.output(t.router_ns, ["iptables", "-w", "-L", "FORWARD", "-v", "-x", "-n"])
    counts = {}
    for line in out.splitlines():
        for name in ("to-lbns", "replies-via-lbns", "replies-direct"):
            if f"/* {name} */" in line:
                counts[name] = int(line.split()[0])
    return counts


def _count_router(fab: Fabric, tenant: str) -> None:
    t = fab.tenant(tenant)
    port = str(t.tcp_port)
    rules = {
        "to-lbns": ["-o", t.router_frontend_if, "-d", t.vip, "-p", "tcp", "--dport", port],
        "replies-via-lbns": ["-i", t.router_frontend_if, "-s", t.vip, "-p", "tcp", "--sport", port],
        "replies-direct": ["-i", t.router_backend_if, "-s", t.vip, "-p", "tcp", "--sport", port],
    }
    for name, match in rules.items():
        fab.lab.run(t.router_ns, ["iptables", "-w", "-A", "FORWARD", *match, "-m", "comment", "--comment", name])


def run(console: Console | None = None, n_lbns: int = 3, conns: int = 60) -> dict[str, object]:
    """Run the demo; returns its findings (the test checks them)."""
    con = console or Console(soft_wrap=True)
    spec = FabricSpec(
        n_lbns=n_lbns,
        prefix="xdsr-demo",
        tenants=(
            TenantSpec(name="blue", frontend_vid=10, backend_vid=100, n_backends=4, vip=VIP),
            TenantSpec(name="red", frontend_vid=20, backend_vid=200, n_backends=3, vip=VIP),
        ),
    )
    findings: dict[str, object] = {}
    con.rule("[bold]xdsr data-plane demo")
    t0 = time.perf_counter()
    with build_fabric(spec) as fab:
        fab.lab.install_signal_handlers()
        con.print(
            f"built lab {fab.lab.name} in {time.perf_counter() - t0:.1f} s: {len(fab.lab.namespaces)} namespaces, "
            f"{n_lbns} LB nodes, tenants blue (VLAN 10 -> 100) and red (VLAN 20 -> 200), both with VIP {VIP} "
            "and backends at 10.1.0.11..",
            highlight=False,
        )
        services = parse_config(dataplane_config(fab)).to_services()
        dps = []
        for i in range(n_lbns):
            ns, ifname, mac = fab.lbn_trunk(i)
            dp = Dataplane.create_or_open(Path(fab.lab.bpffs_dir()) / f"lbn{i}", max_services=64)
            dps.append(dp)
            att = dp.attach(ifname, netns=ns)
            rep = apply(dp, services)
            con.print(
                f"LBN {i}: XDP program id {att.prog_id} on {ifname} ({mac}), "
                f"{len(rep.created)} services applied in {rep.seconds * 1000:.1f} ms",
                highlight=False,
            )
        for t in ("blue", "red"):
            _count_router(fab, t)

        con.rule("connections")
        before = _forwarded(dps)
        result = fab.tcp_client("blue", conns=conns, interval_ms=50, duration=1.0)
        per_lbn = [a - b for a, b in zip(_forwarded(dps), before, strict=True)]
        red = fab.tcp_client("red", conns=conns // 2, interval_ms=50, duration=0.5)
        table = Table("tenant", "backend", "connections")
        for tenant, res in (("blue", result), ("red", red)):
            for name, n in sorted(res.by_backend().items()):
                table.add_row(tenant, name, str(n))
        con.print(table)
        con.print(
            f"blue: {len(result.connections)} connections, {len(result.broken)} broken, "
            f"{len(result.switched)} changed backend; red: {len(red.connections)} connections, "
            f"{len(red.broken)} broken; red saw only red backends: "
            f"{set(red.by_backend()) <= {b.name for b in fab.tenant('red').backends}}",
            highlight=False,
        )
        con.print(f"packets each LBN forwarded for blue (ECMP spread): {per_lbn}", highlight=False)
        counts = _router_counts(fab, "blue")
        con.print(
            f"blue router: {counts['to-lbns']} request packets sent to the LBNs, "
            f"{counts['replies-direct']} reply packets came straight from the backends, "
            f"{counts['replies-via-lbns']} through the LBNs (direct server return)",
            highlight=False,
        )
        findings.update(
            blue=dict(result.by_backend()),
            red=dict(red.by_backend()),
            per_lbn=per_lbn,
            router=counts,
            broken=len(result.broken) + len(red.broken),
        )

        if n_lbns > 1:
            con.rule("an LBN leaves the ECMP route")
            session = fab.tcp_session("blue", conns=conns, interval_ms=50)
            try:
                first = time.perf_counter()
                base = sum(_forwarded(dps))
                while sum(_forwarded(dps)) < base + conns * 5 and time.perf_counter() - first < 10:
                    time.sleep(0.05)
                fab.withdraw_lbn(0)
                con.print(f"withdrew LBN 0: the router's VIP route now has {fab.route_nexthops('blue')}")
                base = _forwarded(dps)
                while sum(_forwarded(dps)) < sum(base) + conns * 10 and time.perf_counter() - first < 20:
                    time.sleep(0.05)
                moved = [a - b for a, b in zip(_forwarded(dps), base, strict=True)]
            finally:
                after = session.stop()
                fab.restore_lbn(0)
            switched = Counter(len(c.backends) for c in after.connections)
            con.print(
                f"after the withdrawal the LBNs forwarded {moved} packets; of {len(after.connections)} "
                f"established connections {len(after.broken)} broke and {len(after.switched)} changed backend: "
                "every LBN computes the same table, so a flow that ECMP moves keeps its backend",
                highlight=False,
            )
            findings.update(withdraw_broken=len(after.broken), withdraw_switched=len(after.switched))
            findings["backends_per_connection"] = dict(switched)
        for dp in dps:
            dp.close()
    con.print(f"cleaned up lab {fab.lab.name}: no namespace, program or pinned map left")
    return findings
