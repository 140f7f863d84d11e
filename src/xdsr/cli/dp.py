"""`xdsr dp …`: drive the data plane of this LB node directly."""

from __future__ import annotations

import enum
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xdsr.dataplane import abi
from xdsr.dataplane.config import ConfigError, load_config
from xdsr.dataplane.libbpf import BpfError
from xdsr.dataplane.loader import (
    DEFAULT_LIMITS,
    DEFAULT_PIN_DIR,
    Dataplane,
    DataplaneError,
    Limits,
    check_attachable,
)
from xdsr.dataplane.model import GENEVE_PORT, VXLAN_PORT, Backend, tunnel_endpoint
from xdsr.dataplane.owner import owned
from xdsr.dataplane.state import ApplyReport, InstalledService, Stats, apply, installed, read_stats
from xdsr.model.checks import MAX_VLAN, unicast_mac
from xdsr.net.frames import mac_bytes

app = typer.Typer(help="Attach, configure and inspect the XDP data plane of this LB node.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("xdsr.cli")

PinDir = Annotated[Path, typer.Option("--pin-dir", help="bpffs directory holding the pinned maps")]
Netns = Annotated[str | None, typer.Option("--netns", help="network namespace of the interface")]


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {msg}", highlight=False)
    return typer.Exit(code)


@app.command()
def attach(
    iface: Annotated[str, typer.Argument(help="interface to load balance on (the trunk port)")],
    pin_dir: PinDir = Path(DEFAULT_PIN_DIR),
    netns: Netns = None,
    mode: Annotated[str, typer.Option(help="native (in the driver) or generic (skb, slow)")] = "native",
    max_services: Annotated[
        int, typer.Option(help="when creating the maps: how many services they hold")
    ] = DEFAULT_LIMITS.max_services,
    table_memory: Annotated[
        int, typer.Option(help="when creating the maps: MiB of Maglev slots, for all tables together")
    ] = DEFAULT_LIMITS.table_memory >> 20,
    max_backends: Annotated[
        int, typer.Option(help="when creating the maps: backends of all services together")
    ] = DEFAULT_LIMITS.max_backends,
    force: Annotated[bool, typer.Option(help="replace an XDP program that is not xdsr's")] = False,
    vtep: Annotated[
        list[str] | None,
        typer.Option(help="this node's VXLAN/Geneve endpoint address (IPv4 and/or IPv6; repeat for both)"),
    ] = None,
    vxlan_port: Annotated[int, typer.Option(help="UDP port of VXLAN frames to the endpoint (0: off)")] = VXLAN_PORT,
    geneve_port: Annotated[int, typer.Option(help="UDP port of Geneve frames to the endpoint (0: off)")] = GENEVE_PORT,
) -> None:
    """Load the XDP program onto IFACE, creating or adopting the pinned maps.
    A failed attach leaves no maps it created behind."""
    try:
        tunnel = tunnel_endpoint(vtep or [], vxlan_port, geneve_port)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    try:
        limits = Limits(max_services, table_memory << 20, max_backends)
        # Before any map is created: what xdsr can tell beforehand costs nothing.
        check_attachable(iface, netns, mode)
        with (
            owned(pin_dir, "xdsr dp attach", undo_on_error=True),
            Dataplane.create_or_open(pin_dir, limits=limits) as dp,
        ):
            a = dp.attach(iface, netns=netns, mode=mode, force=force, tunnel=tunnel)
    except (DataplaneError, BpfError, LookupError, OSError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"attached xdsr (program id {a.prog_id}, {a.mode}) to {iface}; maps in {pin_dir}")


@app.command()
def detach(iface: str, pin_dir: PinDir = Path(DEFAULT_PIN_DIR), netns: Netns = None) -> None:
    """Remove the xdsr program from IFACE, in whichever mode it runs. The
    pinned maps stay (see purge). Detaching what is not attached is no error."""
    try:
        with owned(pin_dir, "xdsr dp detach"), Dataplane.open(pin_dir) as dp:
            modes = dp.detach(iface, netns=netns)
    except (DataplaneError, BpfError, LookupError, OSError) as exc:
        raise _fail(str(exc)) from None
    if modes:
        out.print(f"detached xdsr ({', '.join(modes)}) from {iface}")
    else:
        out.print(f"no xdsr program is attached to {iface}: nothing to detach")


@app.command()
def purge(pin_dir: PinDir = Path(DEFAULT_PIN_DIR)) -> None:
    """Delete the pinned maps (all services and counters). Detach first."""
    try:
        with owned(pin_dir, "xdsr dp purge"):
            Dataplane.open(pin_dir).purge()
    except (DataplaneError, BpfError, OSError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"removed the data plane pinned in {pin_dir}")


def _report_line(r: ApplyReport) -> str:
    line = (
        f"{len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
        f"{len(r.removed)} removed in {r.seconds * 1000:.1f} ms"
    )
    # Said loudly: a table of another size sends nearly every flow of the
    # service to another backend (set table_size to keep it; docs/maglev.md).
    for key, old, new in r.resized:
        line += f"\nwarning: {key}: table resized {old} -> {new} slots, most flows moved to other backends"
    return line


def _apply_file(file: Path, pin_dir: Path, allow_empty: bool, create: bool, next_hop: str | None = None) -> ApplyReport:
    text = sys.stdin.read() if str(file) == "-" else None
    built = load_config(file, text=text, allow_empty=allow_empty).build(next_hop)
    for name, service, unresolved in built:
        if unresolved:
            # Accepted, as an agent accepts them, but this command resolves
            # no addresses: said so that a missing backend is no surprise.
            missing = ", ".join(unresolved)
            what = "no MAC given"
            if service.key.overlay and next_hop is None:
                what = "no MAC or no --next-hop (towards their tunnel endpoints) given"
            err.print(f"warning: {name}: {what} for {missing}; left out of the table", highlight=False)
    if not create and not Dataplane.exists(pin_dir):
        raise DataplaneError(
            f"nothing is attached yet: no data plane is pinned in {pin_dir} "
            "(run `xdsr dp attach IFACE` first, or pass --create to make the maps without attaching)"
        )
    with owned(pin_dir, "xdsr dp apply", undo_on_error=True), Dataplane.create_or_open(pin_dir) as dp:
        if not any(a.live for a in dp.attachments()):
            err.print(
                f"warning: no interface runs the data plane in {pin_dir}: "
                "these tables forward nothing until `xdsr dp attach IFACE`",
                highlight=False,
            )
        return apply(dp, [service for _, service, _ in built])


@app.command("apply")
def apply_cmd(
    file: Annotated[Path, typer.Argument(help="desired state, YAML or JSON; - reads standard input")],
    pin_dir: PinDir = Path(DEFAULT_PIN_DIR),
    watch: Annotated[bool, typer.Option(help="keep running and re-apply whenever FILE changes")] = False,
    allow_empty: Annotated[
        bool, typer.Option(help="take a file without services as 'remove every service' (else: services: [])")
    ] = False,
    create: Annotated[bool, typer.Option(help="make the maps if none are pinned, before any attach")] = False,
    next_hop: Annotated[
        str | None,
        typer.Option(help="MAC of the underlay next hop towards the tunnel endpoints of VXLAN/Geneve members"),
    ] = None,
) -> None:
    """Make the data plane hold exactly the services in FILE (idempotent)."""
    if watch and str(file) == "-":
        raise _fail("--watch needs a file, not standard input", 2)
    if next_hop is not None:
        try:
            next_hop = unicast_mac(next_hop)
        except ValueError as exc:
            raise _fail(f"--next-hop: {exc}", 2) from None
    try:
        report = _apply_file(file, pin_dir, allow_empty, create, next_hop)
    except ConfigError as exc:
        raise _fail(f"{file} is invalid, nothing was changed:\n{exc}", 2) from None
    except (DataplaneError, BpfError, OSError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"{file}: {_report_line(report)}")
    if watch:
        _watch(file, pin_dir, allow_empty, next_hop)


def _watch(file: Path, pin_dir: Path, allow_empty: bool, next_hop: str | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    last = file.stat().st_mtime_ns
    out.print(f"watching {file} (pid {os.getpid()})")
    while not stop.wait(0.5):
        try:
            mtime = file.stat().st_mtime_ns
        except OSError:
            continue
        if mtime == last:
            continue
        last = mtime
        try:
            out.print(f"{file}: {_report_line(_apply_file(file, pin_dir, allow_empty, False, next_hop))}")
        except ConfigError as exc:
            err.print(f"{file} is invalid, kept the previous state:\n{exc}")
        except (DataplaneError, BpfError, OSError) as exc:
            err.print(f"apply failed: {exc}")


def _backend_json(b: Backend) -> dict[str, object]:
    if b.tunnel:
        return {"mac": b.mac, "vni": b.vni, "vtep": str(b.vtep), "next_hop": b.hop_mac, "weight": b.weight}
    return {"mac": b.mac, "vlan": b.vlan, "weight": b.weight}


def _backend_line(b: Backend) -> str:
    if b.tunnel:
        return f"{b.mac} vni {b.vni} via {b.vtep} ({b.hop_mac}) {b.weight}"
    return f"{b.mac} {b.vlan} {b.weight}"


def _service_json(s: InstalledService) -> dict[str, object]:
    k = s.service.key
    return {
        "vip": str(k.vip),
        "port": k.port,
        "protocol": k.protocol,
        "segment": {"type": k.seg_type.name.lower(), "id": k.seg_id},
        "table_size": s.service.table_size,
        "backends": [_backend_json(b) for b in s.service.backends],
        "table_offset": s.table_offset,
        "memory_bytes": s.memory,
        "stats_id": s.stats_id,
    }


@app.command()
def show(pin_dir: PinDir = Path(DEFAULT_PIN_DIR), as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What the kernel holds: attachments and services, read from the maps."""
    try:
        with Dataplane.open(pin_dir) as dp:
            atts = dp.attachments()
            svcs = installed(dp)
            max_services = dp.max_services
    except (DataplaneError, BpfError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        doc = {
            "pin_dir": str(pin_dir),
            "max_services": max_services,
            "attachments": [
                {"iface": a.ifname, "netns": a.netns, "prog_id": a.prog_id, "mode": a.mode, "live": a.live}
                for a in atts
            ],
            "services": [_service_json(s) for s in svcs],
        }
        print(json.dumps(doc, indent=2))
        return
    out.print(f"data plane in {pin_dir}: {len(svcs)} of {max_services} services")
    for a in atts:
        where = f" (netns {a.netns})" if a.netns else ""
        state = f"{a.mode}, program id {a.prog_id}" if a.live else "[red]pinned but not attached[/red]"
        out.print(f"  attached to {a.ifname}{where}: {state}")
    t = Table("service", "table", "backends (mac vlan weight; mac vni via endpoint (next hop) weight)", "memory")
    for s in svcs:
        bl = "\n".join(_backend_line(b) for b in s.service.backends) or "(none: drops)"
        t.add_row(str(s.service.key), str(s.service.table_size), bl, f"{s.memory / 1024:.1f} KiB")
    out.print(t)


@app.command()
def stats(pin_dir: PinDir = Path(DEFAULT_PIN_DIR), as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counters: packets and bytes by verdict reason, and per service."""
    try:
        with Dataplane.open(pin_dir) as dp:
            st: Stats = read_stats(dp)
    except (DataplaneError, BpfError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        doc = {
            "reasons": {
                r.name.lower(): {"verdict": abi.REASON_VERDICT[r], "packets": c.packets, "bytes": c.bytes}
                for r, c in st.reasons.items()
            },
            "services": [
                {"service": str(k), "packets": c.packets, "bytes": c.bytes} for k, c in sorted(st.services.items())
            ],
        }
        print(json.dumps(doc, indent=2))
        return
    t = Table("reason", "verdict", "packets", "bytes")
    for r, c in st.reasons.items():
        t.add_row(r.name.lower(), abi.REASON_VERDICT[r], str(c.packets), str(c.bytes))
    out.print(t)
    t = Table("service", "packets", "bytes")
    for k, c in sorted(st.services.items()):
        t.add_row(str(k), str(c.packets), str(c.bytes))
    out.print(t)


class Protocol(enum.StrEnum):
    tcp = "tcp"
    udp = "udp"


@app.command()
def probe(
    iface: Annotated[str, typer.Argument(help="interface the program is attached to")],
    vip: Annotated[str, typer.Option(help="destination address")],
    port: Annotated[int, typer.Option(help="destination port", min=1, max=65535)],
    protocol: Annotated[Protocol, typer.Option(help="tcp or udp", case_sensitive=False)] = Protocol.tcp,
    vlan: Annotated[int, typer.Option(help="VLAN the packet arrives on (0 = untagged)", min=0, max=MAX_VLAN)] = 0,
    src: Annotated[str | None, typer.Option(help="source address")] = None,
    sport: Annotated[int, typer.Option(help="source port", min=1, max=65535)] = 40000,
    segment: Annotated[
        str | None, typer.Option(help="vxlan:VNI or geneve:VNI: the packet arrives through a tunnel (needs --vtep)")
    ] = None,
    vtep: Annotated[str | None, typer.Option(help="with --segment: this node's tunnel endpoint address")] = None,
    pin_dir: PinDir = Path(DEFAULT_PIN_DIR),
    netns: Netns = None,
) -> None:
    """Run the attached program on a made-up packet: where would this flow go?
    Probes are never counted in the statistics."""
    from xdsr.dataplane.probe import attached_program, encapsulate, probe_frame, run_probe

    try:
        frame = probe_frame("02:00:00:00:00:01", vip, port, protocol.value, 0 if segment else vlan, src, sport)
        if segment is not None:
            kind, _, vni = segment.partition(":")
            if vtep is None:
                raise ValueError("--segment needs --vtep, this node's tunnel endpoint")
            if not vni.isdigit():
                raise ValueError(f"--segment {segment!r}: write vxlan:VNI or geneve:VNI")
            frame = encapsulate(frame, kind, int(vni), vtep, vlan)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    try:
        prog, mac = attached_program(pin_dir, iface, netns)
    except (BpfError, LookupError, FileNotFoundError) as exc:
        raise _fail(f"no xdsr program attached to {iface} with maps in {pin_dir}: {exc}") from None
    frame = mac_bytes(mac) + frame[6:]
    with prog:
        res = run_probe(prog, frame, tunneled=segment is not None)
    if res.forwarded and res.vni is not None:
        out.print(f"{res.verdict}: to backend {res.backend_mac} on VNI {res.vni} behind {res.vtep}")
    elif res.forwarded:
        out.print(f"{res.verdict}: to backend {res.backend_mac} on VLAN {res.backend_vlan}")
    else:
        out.print(res.verdict)
