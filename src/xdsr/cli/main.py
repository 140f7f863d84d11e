"""The `xdsr` command."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from xdsr.cli import agent, bench, dp
from xdsr.cli.apiserver import apiserver
from xdsr.cli.demo import demo
from xdsr.cli.manifests import manifests
from xdsr.cli.operator import operator
from xdsr.cli.status import status
from xdsr.cli.up import up

app = typer.Typer(
    help="xdsr: an XDP L2 direct-server-return load balancer and its control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dp.app, name="dp")
app.add_typer(bench.app, name="bench")
app.add_typer(agent.app, name="agent")
app.command()(demo)
app.command()(apiserver)
app.command()(operator)
app.command()(up)
app.command()(manifests)
app.command()(status)

# Loggers that log every request at INFO: they drown out what the commands
# say (~80 % of `xdsr up`'s output); -v shows them.
CHATTY = ("httpx", "httpcore", "xdsr.apiserver.requests")


def _version(value: bool) -> None:
    if value:
        from xdsr import __version__

        typer.echo(f"xdsr {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v info and each HTTP request, -vv debug")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 0:
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
