"""The agent's options: each defined once, read from three places.

Every option is one field of AgentSettings: its type, default, bounds and
help. `xdsr agent` derives its flags from the fields (cli/agent.py), a YAML
file sets the same fields by name (/etc/xdsr/agent.yaml, or --config FILE),
and so do environment variables for containers: XDSR_AGENT_<FIELD>, e.g.
XDSR_AGENT_IFACE=eth1, lists comma-separated
(XDSR_AGENT_HEALTH_SOURCES=100=10.1.0.250,200=10.2.0.250). A flag beats the
environment, which beats the file, which beats the default. Adding an
option is adding a field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xdsr.dataplane.loader import DEFAULT_PIN_DIR
from xdsr.dataplane.model import GENEVE_PORT, VXLAN_PORT, TunnelEndpoint, tunnel_endpoint
from xdsr.model import checks
from xdsr.store.connect import HELP as STORE_HELP
from xdsr.web.tls import ServerTls

DEFAULT_CONFIG = Path("/etc/xdsr/agent.yaml")
ENV_PREFIX = "XDSR_AGENT_"


class SettingsError(ValueError):
    """The options are incomplete or invalid; the message names each one and where it came from."""


class AgentSettings(BaseModel):
    """Everything `xdsr agent` takes. The field name is the file's key; the
    flag is --field-name unless `flag` says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iface: str = Field(description="the trunk interface to load balance on")
    name: str = Field(description="this LB node's name (its key in the store)")
    listen: str = Field(description="ADDR:PORT of the HTTP API, e.g. 127.0.0.1:9101")
    token_file: Path = Field(description="file holding the bearer token the operator must send (chmod 600)")
    health_listen: str | None = Field(
        None,
        description="ADDR:PORT of a plain-HTTP listener for kubelet's probes, e.g. 127.0.0.1:9879: GET /healthz "
        "answers 200 when the node is ready, else 503 and why; GET /livez 200 while the agent runs (off if not given)",
    )
    netns: str | None = Field(None, description="network namespace of IFACE")
    pin_dir: Path = Field(Path(DEFAULT_PIN_DIR), description="bpffs directory of the pinned maps")
    max_services: int | None = Field(None, ge=1, description="size the maps for N services when creating them")
    store: str | None = Field(None, description="where to register this node: " + STORE_HELP)
    group: str | None = Field(None, description="the LBN group this node asks to join")
    advertise: str | None = Field(
        None,
        description="the API's URL as the operator reaches it (default https://LISTEN, http:// with --insecure-http)",
    )
    mode: str = Field("native", pattern="^(native|generic)$", description="XDP mode: native or generic")
    resolve_interval: float = Field(30.0, ge=1.0, description="seconds between confirmations of a resolved MAC")
    verify_interval: float = Field(
        10.0, gt=0, description="seconds between checks that the kernel's tables are the ones applied"
    )
    state_dir: Path = Field(
        Path("/run/xdsr/agent"), description="where the resolved-MAC cache survives agent restarts (tmpfs)"
    )
    lease_ttl: int = Field(10, ge=2, description="seconds the registration outlives a dead agent")
    health_sources: tuple[str, ...] = Field(
        (),
        description="VLAN=ADDRESS (or vxlan:VNI=ADDRESS, geneve:VNI=ADDRESS): this node's own address on a backend "
        "VLAN or overlay network, the source of health checks there (repeat per segment and family; IPv6 defaults "
        "to the trunk's link-local address)",
        json_schema_extra={"flag": "--health-source"},
    )
    bgp_config: Path | None = Field(
        None, description="announce the VIPs this node serves to routers over BGP (docs/bgp.md)"
    )
    drain: bool = Field(False, description="start drained: announce nothing, keep forwarding (needs --bgp-config)")
    tls_cert: Path | None = Field(None, description="the API's TLS certificate (PEM, serverAuth, the node's address)")
    tls_key: Path | None = Field(None, description="its private key (PEM, chmod 600)")
    tls_client_ca: Path | None = Field(
        None, description="the CA whose clientAuth certificates may call (the operator's)"
    )
    insecure_http: bool = Field(False, description="serve plain HTTP instead of mutual TLS (a lab, one machine)")
    vtep_address: tuple[str, ...] = Field(
        (),
        description="this node's VXLAN/Geneve tunnel endpoint on the trunk's underlay (one IPv4 and/or one IPv6; "
        "repeat): serves VXLAN and Geneve segments (docs/dataplane.md, Overlays)",
        json_schema_extra={"flag": "--vtep-address"},
    )
    vxlan_port: int = Field(VXLAN_PORT, ge=0, le=65535, description="UDP port of VXLAN to the endpoint (0: off)")
    geneve_port: int = Field(GENEVE_PORT, ge=0, le=65535, description="UDP port of Geneve to the endpoint (0: off)")
    underlay_next_hop: str | None = Field(
        None,
        description="address of the underlay router towards members' tunnel endpoints, resolved on the trunk "
        "(default: the endpoints are on the trunk's own network and are resolved themselves)",
    )
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="debug, info, warning, error")

    @model_validator(mode="after")
    def _tls_files(self) -> AgentSettings:
        given = [f is not None for f in (self.tls_cert, self.tls_key, self.tls_client_ca)]
        if any(given) and not all(given):
            raise ValueError("give all of --tls-cert, --tls-key and --tls-client-ca")
        return self

    @model_validator(mode="after")
    def _tunnel(self) -> AgentSettings:
        self.tunnel  # noqa: B018 - raises ValueError for what cannot be an endpoint
        if self.underlay_next_hop is not None:
            checks.unicast_address(self.underlay_next_hop, "the underlay next hop")
        return self

    @property
    def tunnel(self) -> TunnelEndpoint:
        """This node's tunnel endpoint, as the data plane takes it."""
        return tunnel_endpoint(list(self.vtep_address), self.vxlan_port, self.geneve_port)

    @property
    def tls(self) -> ServerTls | None:
        """Mutual TLS for the API; None (plain HTTP) only with insecure_http, which run() checks."""
        if self.tls_cert is None or self.tls_key is None or self.tls_client_ca is None:
            return None
        return ServerTls(self.tls_cert, self.tls_key, self.tls_client_ca)


def flag_name(name: str) -> str:
    extra = AgentSettings.model_fields[name].json_schema_extra
    flag = extra.get("flag") if isinstance(extra, dict) else None
    return str(flag) if flag else "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _is_list(name: str) -> bool:
    return AgentSettings.model_fields[name].annotation == tuple[str, ...]


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in AgentSettings.model_fields:
        value = environ.get(env_name(name))
        if value is None:
            continue
        out[name] = tuple(v.strip() for v in value.split(",") if v.strip()) if _is_list(name) else value
    return out


def from_file(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of option: value")
    return data


def load(
    flags: Mapping[str, Any],
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentSettings:
    """Settings from the file (config, or the default file if it exists),
    the environment and the flags given (None: not given)."""
    environ = os.environ if environ is None else environ
    sources: list[tuple[str, dict[str, Any]]] = []
    if config is None and DEFAULT_CONFIG.exists():
        config = DEFAULT_CONFIG
    if config is not None:
        sources.append((str(config), from_file(config)))
    sources.append(("the environment", from_env(environ)))
    sources.append(("the command line", {k: v for k, v in flags.items() if v is not None and v != ()}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, values in sources:
        merged.update(values)
        origin.update(dict.fromkeys(values, where))
    try:
        return AgentSettings.model_validate(merged)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "missing":
                lines.append(f"{flag_name(name)} is required (or `{name}:` in the file, or {env_name(name)})")
            elif err["type"] == "extra_forbidden":
                lines.append(f"{origin.get(name, '?')}: unknown option {name!r}")
            else:
                shown = flag_name(name) if origin.get(name) == "the command line" else name
                lines.append(f"{shown} (from {origin.get(name, 'the default')}): {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
