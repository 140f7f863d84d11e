"""`xdsr agent`: run the LB node agent (docs/agent.md).

Its flags are derived from the fields of xdsr.agent.settings.AgentSettings,
which the configuration file and the environment set too: an option is
defined there, once."""

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


def agent(**flags: Any) -> None:
    """Run the LB node agent: attach the data plane to IFACE and serve the operator's API."""
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
agent.__signature__ = inspect.Signature(_params)  # type: ignore[attr-defined]
agent.__annotations__ = {p.name: p.annotation for p in _params}
