"""`xdsr operator`: reconcile load balancers onto the LB nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from xdsr.operator.agents import AgentClient
from xdsr.operator.operator import Operator, Settings
from xdsr.store.etcd import EtcdConfig, EtcdStore
from xdsr.web.tls import ClientTls


def agent_tls(ca: Path | None, cert: Path | None, key: Path | None, insecure_http: bool) -> ClientTls | None:
    """The operator's TLS to the agents, or None when plain HTTP is asked for by name."""
    if ca and cert and key and not insecure_http:
        return ClientTls(ca, cert, key)
    if insecure_http and not (ca or cert or key):
        return None
    raise typer.BadParameter("give --agent-ca, --agent-cert and --agent-key (mutual TLS), or --insecure-http")


def operator(
    store: Annotated[
        str, typer.Option(help="etcd endpoints, comma-separated, e.g. http://127.0.0.1:2379 (TLS, auth: ETCDCTL_*)")
    ],
    token_file: Annotated[Path, typer.Option(help="file holding the token the LB nodes' agents accept")],
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    resync: Annotated[float, typer.Option(help="seconds between full passes and node polls")] = 10.0,
    agent_ca: Annotated[Path | None, typer.Option(help="the CA the agents' TLS certificates chain to")] = None,
    agent_cert: Annotated[Path | None, typer.Option(help="the operator's client certificate (clientAuth)")] = None,
    agent_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    insecure_http: Annotated[
        bool, typer.Option(help="reach the agents over plain HTTP instead of mutual TLS (a lab, one machine)")
    ] = False,
) -> None:
    """Watch the store; place load balancers on groups of LB nodes; push their rules; report status."""
    token = token_file.read_text().strip()
    tls = agent_tls(agent_ca, agent_cert, agent_key, insecure_http)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    async def main() -> None:
        agents = AgentClient(token, tls=tls)
        op = Operator(
            EtcdStore(store, config=EtcdConfig.from_env()),
            token,
            Settings(group_size=group_size, resync=resync),
            agents=agents,
        )
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await op.run()

    asyncio.run(main())
