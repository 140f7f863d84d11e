"""The desired-state file of `xdsr dp apply` (YAML or JSON): read and checked.

The file holds the services an LB node forwards in the schema the operator
sends to its agents (xdsr.model.agent.Services), checked by the same code
(xdsr.dataplane.services), so a file the command takes is a state an agent
takes, and the other way round. Checking is complete before anything
touches the kernel: an invalid file changes nothing, and every error names
the field it is about, e.g. ``services[0].backends[1].mac: invalid MAC
address 'zz'``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from xdsr.dataplane import services
from xdsr.dataplane.model import Service
from xdsr.model.agent import Services


class ConfigError(ValueError):
    """The desired state is invalid; the message names each offending field."""


class DataplaneConfig(Services):
    """A checked file: the shared schema, and the data plane's Services from it."""

    def to_services(self, next_hop: str | None = None) -> list[Service]:
        return [service for _, service, _ in self.build(next_hop)]

    def build(self, next_hop: str | None = None) -> list[tuple[str, Service, tuple[str, ...]]]:
        """Each service with its report id and the members given without a
        MAC: this command resolves nothing, so they stay out of the table
        (an agent resolves them). Members behind a tunnel go out through
        next_hop (the underlay router's MAC, `xdsr dp apply --next-hop`);
        without one they stay out as well."""
        out = []
        for s in self.services:
            service, unresolved = services.to_service(s, hop_of=lambda _vtep: next_hop)
            out.append((services.report_id(s), service, unresolved))
        return out


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("tagged-union",):
            continue
        else:
            out += f".{part}" if out else part
    return out


def parse_config(data: object) -> DataplaneConfig:
    try:
        cfg = DataplaneConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _loc(err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    if errors := services.errors(cfg.services):
        raise ConfigError("\n".join(map(str, errors)))
    return cfg


EMPTY_HINT = "write `services: []` to remove every service on purpose (or pass --allow-empty)"


def load_config(path: str | Path, *, text: str | None = None, allow_empty: bool = False) -> DataplaneConfig:
    """Read and validate a YAML or JSON desired-state file (text: its
    content, already read, e.g. from standard input).

    A file without a `services` list is refused unless allow_empty: an
    empty or truncated file must not silently remove every service."""
    p = Path(path)
    name = "<stdin>" if str(path) == "-" else str(p)
    if text is None:
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"{p}: {exc.strerror}") from None
    as_json = p.suffix == ".json"
    try:
        if as_json:
            data = json.loads(text)
        else:
            stream = io.StringIO(text)
            stream.name = name  # type: ignore[misc]  # YAML's error marks name the file
            data = yaml.safe_load(stream)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{name}: not valid {'JSON' if as_json else 'YAML'}: {exc}") from None
    if data is None and allow_empty:
        data = {"services": []}
    if data is None:
        raise ConfigError(f"{name}: the file is empty; {EMPTY_HINT}")
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the top level must be a mapping with a 'services' list")
    if data.get("services") is None:
        if not allow_empty:
            raise ConfigError(f"{name}: no `services` list; {EMPTY_HINT}")
        data = {**data, "services": []}
    return parse_config(data)
