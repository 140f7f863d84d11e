"""`xdsr demo`: a small cloud in network namespaces."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    lbns: Annotated[int, typer.Option(help="LB nodes behind the ECMP route")] = 3,
    conns: Annotated[int, typer.Option(help="TCP connections per run")] = 60,
) -> None:
    """Build a fabric, load balance real traffic, print what happened, clean up."""
    from xdsr.demo.dataplane_demo import run

    run(n_lbns=lbns, conns=conns)
