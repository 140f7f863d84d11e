"""`xdsr up`: the embedded control plane for one machine — etcd, the API
server and the operator in one command. LB nodes join with `xdsr agent
--store ...` pointing at the etcd it prints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from pathlib import Path
from typing import Annotated

import typer
import yaml

log = logging.getLogger("xdsr.up")


def _ensure_tokens(state_dir: Path) -> tuple[Path, Path, str]:
    """The API tokens file and the agents' token file, created on first use."""
    tokens = state_dir / "tokens.yaml"
    agent = state_dir / "agent-token"
    admin = ""
    if not tokens.exists():
        admin = secrets.token_urlsafe(24)
        tokens.write_text(yaml.safe_dump({"tokens": [{"token": admin, "project_id": "admin", "admin": True}]}))
        tokens.chmod(0o600)
    else:
        for t in (yaml.safe_load(tokens.read_text()) or {}).get("tokens", []):
            if t.get("admin"):
                admin = t["token"]
    if not agent.exists():
        agent.write_text(secrets.token_urlsafe(24))
        agent.chmod(0o600)
    return tokens, agent, admin


def up(
    state_dir: Annotated[Path, typer.Option(help="etcd data, tokens; kept across runs")] = Path("/var/lib/xdsr"),
    listen: Annotated[str, typer.Option(help="ADDR:PORT of the API")] = "127.0.0.1:9876",
    store: Annotated[str | None, typer.Option(help="use this etcd instead of starting one")] = None,
    etcd_port: Annotated[int, typer.Option(help="client port of the etcd it starts")] = 2379,
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    networks_file: Annotated[Path | None, typer.Option(help="subnets and their segments (see docs/api.md)")] = None,
) -> None:
    """Run etcd, the API server and the operator until Ctrl-C."""
    from xdsr.apiserver import ApiServer, load_tokens
    from xdsr.apiserver.networks import Networks, load_networks
    from xdsr.cli.apiserver import parse_listen
    from xdsr.local.etcd import EtcdServer
    from xdsr.operator.operator import Operator, Settings
    from xdsr.store.etcd import EtcdStore

    state_dir.mkdir(parents=True, exist_ok=True)
    tokens_file, agent_token_file, admin = _ensure_tokens(state_dir)
    etcd = None
    if store is None:
        etcd = EtcdServer(state_dir / "etcd", port=etcd_port).start()
        store = etcd.endpoint
    host, port = parse_listen(listen)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    async def main() -> None:
        assert store is not None
        networks = load_networks(networks_file) if networks_file else Networks()
        api = ApiServer(EtcdStore(store), load_tokens(tokens_file), host=host, port=port, networks=networks)
        op = Operator(EtcdStore(store), agent_token_file.read_text().strip(), Settings(group_size=group_size))
        await api.start()
        await op.start()
        typer.echo(
            f"xdsr control plane up\n"
            f"  API        {api.url}   (metrics {api.url}/metrics, health {api.url}/healthz)\n"
            f"  tokens     {tokens_file}   (add project tokens there and restart; docs/api.md)\n"
            f"  admin      {admin or 'no admin token in ' + str(tokens_file)}\n"
            f"  openstack  openstack --os-auth-type admin_token --os-endpoint {api.url} --os-token "
            f"{admin or 'TOKEN'} loadbalancer list\n"
            f"  etcd       {store}\n"
            f"  LB nodes   xdsr agent --iface IFACE --name NAME --listen ADDR:PORT --store {store} "
            f"--token-file {agent_token_file}\n"
            f"  status     xdsr status --store {store} --token-file {agent_token_file}\n"
            f"Ctrl-C stops it; LB nodes keep forwarding."
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await op.stop()
        await api.stop()

    try:
        asyncio.run(main())
    finally:
        if etcd is not None:
            with contextlib.suppress(Exception):
                etcd.stop()
