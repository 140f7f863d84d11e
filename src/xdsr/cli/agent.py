"""`xdsr agent`: run the LB node agent (docs/agent.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xdsr.dataplane.loader import DEFAULT_PIN_DIR

err = Console(stderr=True, soft_wrap=True)


def agent(
    iface: Annotated[str, typer.Option("--iface", help="the trunk interface to load balance on")],
    name: Annotated[str, typer.Option("--name", help="this LB node's name (its key in the store)")],
    listen: Annotated[str, typer.Option("--listen", help="ADDR:PORT of the HTTP API, e.g. 127.0.0.1:9101")],
    token_file: Annotated[
        Path, typer.Option("--token-file", help="file holding the bearer token the operator must send (chmod 600)")
    ],
    netns: Annotated[str | None, typer.Option("--netns", help="network namespace of IFACE")] = None,
    pin_dir: Annotated[Path, typer.Option("--pin-dir", help="bpffs directory of the pinned maps")] = Path(
        DEFAULT_PIN_DIR
    ),
    max_services: Annotated[
        int | None, typer.Option("--max-services", help="size the maps for N services when creating them")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="etcd endpoints (comma-separated URLs) to register in; TLS, auth: ETCDCTL_*",
        ),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="the LBN group this node asks to join")] = None,
    advertise: Annotated[
        str | None,
        typer.Option("--advertise", help="the API's URL as the operator reaches it (default https://LISTEN)"),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="XDP mode: native or generic")] = "native",
    resolve_interval: Annotated[
        float, typer.Option("--resolve-interval", help="seconds between confirmations of a resolved MAC", min=1.0)
    ] = 30.0,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="where the resolved-MAC cache survives agent restarts (tmpfs)")
    ] = Path("/run/xdsr/agent"),
    lease_ttl: Annotated[
        int, typer.Option("--lease-ttl", help="seconds the registration outlives a dead agent", min=2)
    ] = 10,
    health_source: Annotated[
        list[str] | None,
        typer.Option(
            "--health-source",
            help="VLAN=ADDRESS: this node's own address on a backend VLAN, the source of health checks there "
            "(repeat per VLAN and family; IPv6 defaults to the trunk's link-local address)",
        ),
    ] = None,
    bgp_config: Annotated[
        Path | None,
        typer.Option("--bgp-config", help="announce the VIPs this node serves to routers over BGP (docs/bgp.md)"),
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="start drained: announce nothing, keep forwarding (needs --bgp-config)")
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="the API's TLS certificate (PEM, serverAuth, the node's address)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="its private key (PEM, chmod 600)")] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option("--tls-client-ca", help="the CA whose clientAuth certificates may call (the operator's)"),
    ] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="serve plain HTTP instead of mutual TLS (a lab, one machine)")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """Run the LB node agent: attach the data plane to IFACE and serve the operator's API."""
    from xdsr.agent.server import Options, StartupError, run
    from xdsr.web.tls import ServerTls

    tls_files = (tls_cert, tls_key, tls_client_ca)
    if any(tls_files) and not all(tls_files):
        err.print("[red]error:[/red] give all of --tls-cert, --tls-key and --tls-client-ca", highlight=False)
        raise typer.Exit(2)
    tls = ServerTls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key and tls_client_ca else None

    logging.getLogger("xdsr").setLevel(log_level.upper())
    opts = Options(
        iface=iface,
        name=name,
        listen=listen,
        token_file=token_file,
        netns=netns,
        pin_dir=pin_dir,
        max_services=max_services,
        store=store,
        group=group,
        advertise=advertise,
        mode=mode,
        resolve_interval=resolve_interval,
        state_dir=state_dir,
        lease_ttl=lease_ttl,
        health_sources=tuple(health_source or ()),
        bgp_config=bgp_config,
        drain=drain,
        tls=tls,
        insecure_http=insecure_http,
    )
    try:
        code = run(opts)
    except StartupError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)
