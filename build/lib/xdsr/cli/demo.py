"""`xdsr demo`: a small cloud in network namespaces."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    conns: Annotated[int, typer.Option(help="TCP connections per run")] = 60,
    dataplane: Annotated[
        bool, typer.Option("--dataplane", help="the data plane alone, configured directly (no control plane)")
    ] = False,
) -> None:
    """Build a small cloud, create load balancers through the API, send real traffic, print what happened, clean up."""
    if dataplane:
        from xdsr.demo.dataplane_demo import run as run_dataplane

        run_dataplane(conns=conns)
        return
    from xdsr.demo.cloud_demo import run

    run(conns=conns)
