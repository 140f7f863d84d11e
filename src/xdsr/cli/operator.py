"""`xdsr operator`: reconcile load balancers onto the LB nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from xdsr.operator.operator import Operator, Settings
from xdsr.store.etcd import EtcdStore


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
    store: Annotated[str, typer.Option(help="etcd endpoint, e.g. http://127.0.0.1:2379")],
    token_file: Annotated[Path, typer.Option(help="file holding the token the LB nodes' agents accept")],
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    resync: Annotated[float, typer.Option(help="seconds between full passes and node polls")] = 10.0,
    metrics_listen: Annotated[
        str | None, typer.Option(help="ADDR:PORT to serve Prometheus /metrics on (off if not given)")
    ] = None,
) -> None:
    """Watch the store; place load balancers on groups of LB nodes; push their rules; report status."""
    token = token_file.read_text().strip()
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    async def main() -> None:
        op = Operator(EtcdStore(store), token, Settings(group_size=group_size, resync=resync))
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        server = await serve_metrics(metrics_listen) if metrics_listen else None
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await op.run()
        finally:
            if server is not None:
                server.should_exit = True

    asyncio.run(main())
