"""`xdsr manifests`: every Kubernetes object of a deployment, as one YAML stream for `kubectl apply -f -`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError


def manifests(
    values: Annotated[
        Path | None, typer.Option("--values", help="YAML of the deployment's values (xdsr.deploy.values.Values)")
    ] = None,
    seccomp_profile: Annotated[
        bool, typer.Option("--seccomp-profile", help="print the agent's seccomp profile (JSON) instead")
    ] = False,
) -> None:
    """Print the CRDs, namespace, RBAC, Deployments, Services, DaemonSet, PDBs and ServiceMonitor."""
    import json

    from xdsr.deploy.manifests import manifests as render
    from xdsr.deploy.manifests import seccomp_profile as profile
    from xdsr.deploy.values import load_values

    if seccomp_profile:
        typer.echo(json.dumps(profile(), indent=2))
        return
    try:
        v = load_values(values)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        typer.echo(f"error: {values}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(yaml.safe_dump_all(render(v), sort_keys=False), nl=False)
