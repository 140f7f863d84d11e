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

from xdsr.local.etcd import EtcdError, EtcdServer

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


def _fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


async def _watch_etcd(etcd: EtcdServer, stop: asyncio.Event) -> None:
    """The control plane is nothing without its etcd: stop when it dies."""
    while etcd.exited is None:
        await asyncio.sleep(0.5)
    log.error("etcd exited with status %s: stopping", etcd.exited)
    stop.set()


def up(
    state_dir: Annotated[Path, typer.Option(help="etcd data, tokens; kept across runs")] = Path("/var/lib/xdsr"),
    listen: Annotated[str, typer.Option(help="ADDR:PORT of the API")] = "127.0.0.1:9876",
    store: Annotated[str | None, typer.Option(help="use this etcd instead of starting one")] = None,
    etcd_port: Annotated[int, typer.Option(help="client port of the etcd it starts")] = 2379,
    etcd_listen: Annotated[
        str, typer.Option(help="address of the etcd it starts, for LB nodes on other machines (needs --etcd-cert)")
    ] = "127.0.0.1",
    etcd_cert: Annotated[Path | None, typer.Option(help="serve etcd over TLS with this certificate")] = None,
    etcd_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    etcd_client_ca: Annotated[
        Path | None, typer.Option(help="the CA whose certificates etcd's clients must present")
    ] = None,
    group_size: Annotated[int, typer.Option(help="LB nodes per group")] = 3,
    networks_file: Annotated[Path | None, typer.Option(help="subnets and their segments (see docs/api.md)")] = None,
    agent_ca: Annotated[Path | None, typer.Option(help="the CA the agents' TLS certificates chain to")] = None,
    agent_cert: Annotated[Path | None, typer.Option(help="the operator's client certificate (clientAuth)")] = None,
    agent_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    insecure_http: Annotated[
        bool, typer.Option(help="reach the agents over plain HTTP instead of mutual TLS (a lab, one machine)")
    ] = False,
) -> None:
    """Run etcd, the API server and the operator until Ctrl-C."""
    from xdsr.apiserver import ApiServer, load_tokens
    from xdsr.apiserver.networks import Networks, load_networks
    from xdsr.cli.apiserver import parse_listen
    from xdsr.cli.operator import agent_tls
    from xdsr.operator.agents import AgentClient
    from xdsr.operator.operator import Operator, Settings
    from xdsr.store.etcd import EtcdConfig, EtcdStore

    tls = agent_tls(agent_ca, agent_cert, agent_key, insecure_http)
    etcd_tls = _etcd_tls(etcd_listen, etcd_cert, etcd_key, etcd_client_ca, insecure_http)
    config = EtcdConfig.from_env()
    if etcd_tls is not None and config.cert is None:
        # Our own clients: etcd's certificate (its JSON gateway already needs
        # it to carry clientAuth), trusting the CA that signs its clients.
        config = EtcdConfig(
            ca=config.ca or etcd_tls[2], cert=etcd_tls[0], key=etcd_tls[1], user=config.user, password=config.password
        )

    try:
        host, port = parse_listen(listen)
        state_dir.mkdir(parents=True, exist_ok=True)
        tokens_file, agent_token_file, admin = _ensure_tokens(state_dir)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        hint = " (run as root, or pass --state-dir DIR)" if isinstance(exc, PermissionError) else ""
        raise _fail(f"cannot use the state directory {state_dir}: {exc.strerror}{hint}") from None
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    async def main(etcd: EtcdServer | None) -> None:
        assert store is not None
        networks = load_networks(networks_file) if networks_file else Networks()
        api = ApiServer(
            EtcdStore(store, config=config), load_tokens(tokens_file), host=host, port=port, networks=networks
        )
        token = agent_token_file.read_text().strip()
        op = Operator(
            EtcdStore(store, config=config), token, Settings(group_size=group_size), agents=AgentClient(token, tls=tls)
        )
        # From here the loop's handlers take over from _stop below.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await api.start()
            await op.start()
            if not stop.is_set():
                agent_tls = (
                    "--insecure-http" if tls is None else "--tls-cert CERT --tls-key KEY --tls-client-ca CLIENT-CA"
                )
                typer.echo(
                    f"xdsr control plane up\n"
                    f"  API        {api.url}   (metrics {api.url}/metrics, health {api.url}/healthz)\n"
                    f"  tokens     {tokens_file}   (add project tokens there and restart; docs/api.md)\n"
                    f"  admin      {admin or 'no admin token in ' + str(tokens_file)}\n"
                    f"  openstack  openstack --os-auth-type admin_token --os-endpoint {api.url} --os-token "
                    f"{admin or 'TOKEN'} loadbalancer list\n"
                    f"  etcd       {store}\n"
                    f"  LB nodes   xdsr agent --iface IFACE --name NAME --listen ADDR:PORT --store {store} "
                    f"--token-file {agent_token_file} {agent_tls}\n"
                    f"  status     xdsr status --store {store} --token-file {agent_token_file}\n"
                    f"Ctrl-C stops it; LB nodes keep forwarding."
                )
                watcher = asyncio.create_task(_watch_etcd(etcd, stop)) if etcd is not None else None
                await stop.wait()
                if watcher is not None:
                    watcher.cancel()
        finally:
            await op.stop()
            await api.stop()

    # SIGTERM/SIGINT stop `xdsr up` from the first child on: until the
    # event loop's handlers take over, they raise Stop, and the finally
    # below stops the etcd it started (a child in a session of its own,
    # which no signal to this process reaches).
    def _stop(signum: int, frame: object) -> None:
        raise Stop(signum)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    etcd = None
    try:
        if store is None:
            etcd = EtcdServer(state_dir / "etcd", port=etcd_port, host=etcd_listen, tls=etcd_tls)
            store = etcd.start().endpoint
        asyncio.run(main(etcd))
        if etcd is not None and etcd.exited is not None:
            raise _fail(f"etcd exited with status {etcd.exited}; its log is {etcd.log_path}:\n{etcd.log_tail(800)}")
    except Stop:
        pass
    except (EtcdError, RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    finally:
        if etcd is not None:
            with contextlib.suppress(Exception):
                etcd.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _etcd_tls(
    listen: str, cert: Path | None, key: Path | None, client_ca: Path | None, insecure_http: bool
) -> tuple[Path, Path, Path] | None:
    """etcd's TLS: all three files or none; an etcd other machines reach needs it unless plain HTTP is asked for."""
    import ipaddress

    if cert and key and client_ca:
        return cert, key, client_ca
    if cert or key or client_ca:
        raise typer.BadParameter("give all of --etcd-cert, --etcd-key and --etcd-client-ca")
    try:
        loopback = ipaddress.ip_address(listen).is_loopback
    except ValueError:
        raise typer.BadParameter(f"--etcd-listen {listen!r} is not an IP address") from None
    if not loopback and not insecure_http:
        raise typer.BadParameter(
            f"--etcd-listen {listen}: other machines reach etcd, serve it over TLS (--etcd-cert, --etcd-key, "
            "--etcd-client-ca) or pass --insecure-http"
        )
    return None


class Stop(Exception):
    """SIGTERM or SIGINT before the event loop runs."""
