"""`xdsr operator`: reconcile load balancers onto the LB nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from xdsr.store.connect import HELP as STORE_HELP
from xdsr.store.connect import is_kubernetes, open_store
from xdsr.web.tls import ClientTls


def agent_tls(ca: Path | None, cert: Path | None, key: Path | None, insecure_http: bool) -> ClientTls | None:
    """The operator's TLS to the agents, or None when plain HTTP is asked for by name."""
    if ca and cert and key and not insecure_http:
        return ClientTls(ca, cert, key)
    if insecure_http and not (ca or cert or key):
        return None
    raise typer.BadParameter("give --agent-ca, --agent-cert and --agent-key (mutual TLS), or --insecure-http")


async def serve_metrics(listen: str) -> uvicorn.Server:
    """/metrics on the operator's own loop: the collectors read its view
    between passes, never while a pass changes it."""
    from prometheus_client import make_asgi_app

    from xdsr.cli.apiserver import parse_listen

    host, port = parse_listen(listen)
    server = _Quiet(uvicorn.Config(make_asgi_app(), host=host, port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(), name="metrics")
    while not server.started:
        if task.done():
            raise typer.BadParameter(f"cannot serve metrics on {listen}", param_hint="--metrics-listen")
        await asyncio.sleep(0.01)
    return server


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The operator owns SIGINT/SIGTERM.
        yield


def operator(
    store: Annotated[str, typer.Option(help=STORE_HELP)],
    token_file: Annotated[Path, typer.Option(help="file holding the token the LB nodes' agents accept")],
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    resync: Annotated[float, typer.Option(help="seconds between full passes and node polls")] = 10.0,
    leader_elect: Annotated[
        bool,
        typer.Option(
            help="act only while holding the Lease xdsr-operator (Kubernetes store): of several replicas one acts"
        ),
    ] = False,
    health_listen: Annotated[
        str | None,
        typer.Option(help="ADDR:PORT answering GET /healthz while the process's loop runs (a liveness probe)"),
    ] = None,
    agent_ca: Annotated[Path | None, typer.Option(help="the CA the agents' TLS certificates chain to")] = None,
    agent_cert: Annotated[Path | None, typer.Option(help="the operator's client certificate (clientAuth)")] = None,
    agent_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    insecure_http: Annotated[
        bool, typer.Option(help="reach the agents over plain HTTP instead of mutual TLS (a lab, one machine)")
    ] = False,
    metrics_listen: Annotated[
        str | None, typer.Option(help="ADDR:PORT to serve Prometheus /metrics on (off if not given)")
    ] = None,
) -> None:
    """Watch the store; place load balancers on groups of LB nodes; push their rules; report status."""
    token = token_file.read_text().strip()
    tls = agent_tls(agent_ca, agent_cert, agent_key, insecure_http)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    if leader_elect and not is_kubernetes(store):
        typer.echo("error: --leader-elect needs --store kubernetes", err=True)
        raise typer.Exit(2)

    # Here, not with the module: every `xdsr` command loads this module to
    # list its options, and an LB node's agent starts faster without the
    # operator's modules.
    from xdsr.operator.agents import AgentClient
    from xdsr.operator.operator import Operator, Settings

    async def main() -> int:
        db = open_store(store, component="operator")
        op = Operator(db, token, Settings(group_size=group_size, resync=resync), agents=AgentClient(token, tls=tls))
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        work = op.run()
        if is_kubernetes(store):
            from xdsr.store.kubernetes_status import GroupStatusWriter

            # kubectl's view of each LBNGroup (status, conditions, events), beside the operator
            work = _together(work, GroupStatusWriter(db).run())  # type: ignore[arg-type]
        if health_listen:
            host, _, port = health_listen.rpartition(":")
            await asyncio.start_server(_healthz, host or "0.0.0.0", int(port))
        server = await serve_metrics(metrics_listen) if metrics_listen else None
        try:
            with contextlib.suppress(asyncio.CancelledError):
                if not leader_elect:
                    await work
                    return 0
                from xdsr.store.kubernetes import KubernetesStore
                from xdsr.store.kubernetes_leader import LeaderElection

                assert isinstance(db, KubernetesStore)
                if not await LeaderElection(db, "xdsr-operator").lead(work):
                    return 1  # lost the Lease: stop acting; the pod restarts and stands again
            return 0
        finally:
            if server is not None:
                server.should_exit = True

    raise typer.Exit(asyncio.run(main()))


async def _together(*coros: Any) -> None:
    """Run all; the first to end (or fail) ends the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()


async def _healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 to any request: answered by the operator's own event loop, so a wedged loop fails the probe."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        )
        await writer.drain()
    writer.close()
