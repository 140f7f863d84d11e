"""`xdsr apiserver`: serve the load-balancer API (Octavia v2 subset) over the store."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from xdsr.store.connect import HELP as STORE_HELP

log = logging.getLogger("xdsr.cli")


def parse_listen(listen: str) -> tuple[str, int]:
    """ADDR:PORT, [V6ADDR]:PORT or :PORT (all IPv4 addresses)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {listen!r}: expected ADDR:PORT, e.g. 127.0.0.1:9876")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def apiserver(
    store: Annotated[str, typer.Option("--store", help=STORE_HELP)] = "http://127.0.0.1:2379",
    listen: Annotated[str, typer.Option("--listen", help="ADDR:PORT to serve on")] = "127.0.0.1:9876",
    tokens_file: Annotated[
        Path, typer.Option("--tokens-file", help="YAML: tokens: [{token, project_id, admin}]")
    ] = Path("/etc/xdsr/tokens.yaml"),
    networks_file: Annotated[
        Path | None, typer.Option("--networks-file", help="YAML: subnets: [{id, network_id, cidr, segment}]")
    ] = None,
) -> None:
    """Serve the load-balancer API (the subset of Octavia v2 that L2DSR can serve) until SIGINT/SIGTERM."""
    import uvloop

    from xdsr.apiserver import ApiServer, TokensError, load_tokens
    from xdsr.apiserver.networks import Networks, NetworksError, load_networks
    from xdsr.store.connect import open_store

    try:
        host, port = parse_listen(listen)
        tokens = load_tokens(tokens_file)
        networks = load_networks(networks_file) if networks_file else Networks()
    except (ValueError, TokensError, NetworksError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run() -> None:
        etcd = open_store(store, component="apiserver")
        server = ApiServer(etcd, tokens, host=host, port=port, log_level="info", networks=networks)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.start()
            typer.echo(f"xdsr apiserver on {server.url} (store {store}, {len(tokens)} tokens)", err=True)
            await stop.wait()
        finally:
            await server.stop()
            await etcd.close()

    try:
        # uvloop's event loop: asyncio's own loop and transports took about
        # a tenth of the API server's CPU per request.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except OSError as exc:
        typer.echo(f"error: cannot serve on {listen}: {exc}", err=True)
        raise typer.Exit(1) from None
