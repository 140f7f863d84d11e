"""`xdsr operator`: reconcile load balancers onto the LB nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from xdsr.operator.operator import Operator, Settings
from xdsr.store.etcd import EtcdStore


def operator(
    store: Annotated[str, typer.Option(help="etcd endpoint, e.g. http://127.0.0.1:2379")],
    token_file: Annotated[Path, typer.Option(help="file holding the token the LB nodes' agents accept")],
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    resync: Annotated[float, typer.Option(help="seconds between full passes and node polls")] = 10.0,
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
        with contextlib.suppress(asyncio.CancelledError):
            await op.run()

    asyncio.run(main())
