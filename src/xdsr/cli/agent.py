"""`xdsr agent`: run the LB node agent (docs/agent.md); `xdsr agent status`,
`drain` and `undrain` ask a running one (docs/bgp.md).

The agent's flags are derived from the fields of
xdsr.agent.settings.AgentSettings, which the configuration file and the
environment set too: an option is defined there, once."""

from __future__ import annotations

import inspect
import logging
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from xdsr.agent.settings import AgentSettings, SettingsError, env_name, flag_name, load

err = Console(stderr=True, soft_wrap=True)

_CONFIG_HELP = "YAML file of options (the same names as the flags, with _): default /etc/xdsr/agent.yaml if it exists"


def _flag_type(annotation: Any) -> Any:
    """The flag's type: the field's, optional (a flag not given leaves the
    file, the environment or the default in charge); lists repeat."""
    if typing.get_origin(annotation) is tuple:
        return list[str] | None
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return annotation | None


def _parameters() -> list[inspect.Parameter]:
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, typer.Option("--config", help=_CONFIG_HELP)],
        )
    ]
    for name, field in AgentSettings.model_fields.items():
        default = "required" if field.is_required() else f"default {field.default}"
        if field.default is None or field.default == ():
            default = "optional"
        help_ = f"{field.description} ({default}; env {env_name(name)})"
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    _flag_type(field.annotation), typer.Option(flag_name(name), help=help_, show_default=False)
                ],
            )
        )
    return params


def agent(ctx: typer.Context, **flags: Any) -> None:
    """Run the LB node agent: attach the data plane to IFACE and serve the operator's API."""
    if ctx.invoked_subcommand is not None:
        return
    from xdsr.agent.server import StartupError, run

    config = flags.pop("config", None)
    if flags.get("health_sources") is not None:
        flags["health_sources"] = tuple(flags["health_sources"])
    try:
        settings = load(flags, config)
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    logging.getLogger("xdsr").setLevel(settings.log_level.upper())
    try:
        code = run(settings)
    except StartupError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


_params = _parameters()
_ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
agent.__signature__ = inspect.Signature([_ctx, *_params])  # type: ignore[attr-defined]
agent.__annotations__ = {p.name: p.annotation for p in [_ctx, *_params]}

app = typer.Typer(
    help="Run the LB node agent, or ask a running one (status, drain, undrain).",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
)
app.callback(invoke_without_command=True)(agent)

# -- asking a running agent --------------------------------------------------

Endpoint = Annotated[str, typer.Option(help="the agent's API, e.g. https://10.0.0.12:9101")]
TokenFile = Annotated[Path, typer.Option(help="file holding the agents' bearer token")]
AgentCa = Annotated[Path | None, typer.Option(help="the CA the agent's TLS certificate chains to")]
AgentCert = Annotated[Path | None, typer.Option(help="a client certificate the agent accepts (clientAuth)")]
AgentKey = Annotated[Path | None, typer.Option(help="its private key")]
Insecure = Annotated[bool, typer.Option(help="plain HTTP instead of mutual TLS (a lab, one machine)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _call(
    method: str,
    path: str,
    endpoint: str,
    token_file: Path,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    insecure_http: bool,
) -> Any:
    import httpx

    from xdsr.cli.operator import agent_tls

    tls = agent_tls(ca, cert, key, insecure_http)  # as the operator reaches the agents
    if tls is not None and not endpoint.startswith("https://"):
        raise typer.BadParameter(f"{endpoint}: not https: with TLS options the agent is asked over TLS only")
    verify: Any = tls.context() if tls is not None else True
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise typer.BadParameter(f"{token_file}: {exc.strerror}", param_hint="--token-file") from None
    try:
        with httpx.Client(timeout=5, verify=verify, headers={"Authorization": f"Bearer {token}"}) as http:
            r = http.request(method, endpoint.rstrip("/") + path)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] {endpoint}: {exc.__class__.__name__}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        err.print(f"[red]error:[/red] {method} {path}: {r.status_code} {detail}", highlight=False)
        raise typer.Exit(1)
    return r.json()


@app.command("status")
def status(
    endpoint: Endpoint = "http://127.0.0.1:9101",
    token_file: TokenFile = Path("/etc/xdsr/agent-token"),
    agent_ca: AgentCa = None,
    agent_cert: AgentCert = None,
    agent_key: AgentKey = None,
    insecure_http: Insecure = False,
    as_json: AsJson = False,
) -> None:
    """A running agent: the generation it holds, its services, its BGP sessions and what it announces."""
    tls = (endpoint, token_file, agent_ca, agent_cert, agent_key, insecure_http)
    state = _call("GET", "/v1/state", *tls)
    bgp = _call("GET", "/v1/bgp", *tls)
    if as_json:
        import json

        typer.echo(json.dumps({"state": state, "bgp": bgp}, indent=2))
        return
    Console(soft_wrap=True).print(render_status(state, bgp))


@app.command("drain")
def drain(
    endpoint: Endpoint = "http://127.0.0.1:9101",
    token_file: TokenFile = Path("/etc/xdsr/agent-token"),
    agent_ca: AgentCa = None,
    agent_cert: AgentCert = None,
    agent_key: AgentKey = None,
    insecure_http: Insecure = False,
) -> None:
    """Withdraw every VIP the node announces; it keeps forwarding what still arrives (kept across restarts)."""
    bgp = _call("PUT", "/v1/drain", endpoint, token_file, agent_ca, agent_cert, agent_key, insecure_http)
    Console(soft_wrap=True).print(_bgp_summary(bgp))


@app.command("undrain")
def undrain(
    endpoint: Endpoint = "http://127.0.0.1:9101",
    token_file: TokenFile = Path("/etc/xdsr/agent-token"),
    agent_ca: AgentCa = None,
    agent_cert: AgentCert = None,
    agent_key: AgentKey = None,
    insecure_http: Insecure = False,
) -> None:
    """Announce again every VIP the node's data plane holds."""
    bgp = _call("DELETE", "/v1/drain", endpoint, token_file, agent_ca, agent_cert, agent_key, insecure_http)
    Console(soft_wrap=True).print(_bgp_summary(bgp))


_STATE_STYLE = {"announcing": "green", "drained": "yellow", "withdrawn": "red", "stopped": "red"}


def _bgp_summary(bgp: dict[str, Any]) -> str:
    if not bgp.get("enabled"):
        return "bgp: not configured (no --bgp-config)"
    st = bgp.get("state") or "?"
    line = f"bgp: [{_STATE_STYLE.get(st, 'white')}]{st}[/]"
    if bgp.get("reason") and st != "drained":
        line += f" ({bgp['reason']})"
    if bgp.get("drained") and st != "drained":
        line += "  (drained)"
    announced = bgp.get("announced") or []
    line += f"\nannounced ({len(announced)}): {', '.join(announced) if announced else '-'}"
    return line


def render_status(state: dict[str, Any], bgp: dict[str, Any]) -> Any:
    """What `xdsr agent status` prints: rich renderables, one group."""
    from rich.box import SIMPLE
    from rich.console import Group
    from rich.table import Table

    services = state.get("services") or []
    ok = sum(1 for s in services if s.get("ok"))
    head = f"node [bold]{state.get('name')}[/]  generation {state.get('generation')}"
    head += f"  services {ok}/{len(services)} installed"
    if state.get("error"):
        head += f"\n[red]error:[/] {state['error']}"
    parts: list[Any] = [head, _bgp_summary(bgp)]
    peers = bgp.get("peers") or []
    if peers:
        table = Table("peer", "address", "AS", "session", "since", "BFD", "announced", "exported", "error", box=SIMPLE)
        for p in peers:
            session = f"[green]{p['state']}[/]" if p.get("up") else f"[red]{p['state']}[/]"
            table.add_row(
                p["name"],
                p["address"],
                str(p["asn"]),
                session,
                p.get("since") or "-",
                "on" if p.get("bfd") else "off",
                str(len(p.get("announced") or [])),
                "-" if p.get("exported") is None else str(p["exported"]),
                p.get("error") or "",
            )
        parts.append(table)
    return Group(*parts)
