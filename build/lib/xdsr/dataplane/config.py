"""The desired-state file of `xdsr dp apply` (YAML or JSON), validated.

Validation is complete before anything touches the kernel: an invalid file
changes nothing, and every error names the field it is about, e.g.
``services[0].backends[1].mac: invalid MAC address 'zz'``.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, ValidationError, field_validator, model_validator

from xdsr.dataplane import abi
from xdsr.dataplane.model import (
    MAX_TABLE_SIZE,
    PROTOCOLS,
    Backend,
    IPAddress,
    Service,
    ServiceKey,
    normalize_mac,
)
from xdsr.maglev import default_table_size, is_prime


class ConfigError(ValueError):
    """The desired state is invalid; the message names each offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Strict):
    type: Literal["vlan", "vxlan", "geneve"] = "vlan"
    id: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _check(self) -> SegmentSpec:
        if self.type != "vlan":
            raise ValueError(f"segment type {self.type!r} is not supported yet (only 'vlan')")
        if self.id > 4094:
            raise ValueError(f"VLAN id {self.id} is outside 0-4094 (0 = untagged)")
        return self


class BackendSpec(_Strict):
    mac: str
    vlan: Annotated[int, Field(ge=0, le=4094)] = 0
    weight: Annotated[int, Field(ge=0, le=2**32 - 1)] = 1
    id: str | None = None

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        mac = normalize_mac(v)
        octets = [int(p, 16) for p in mac.split(":")]
        if octets[0] & 1:
            raise ValueError(f"{v!r} is a multicast/broadcast address, not a backend")
        if not any(octets):
            raise ValueError(f"{v!r} is the zero address")
        return mac


class ServiceSpec(_Strict):
    vip: IPvAnyAddress
    port: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["tcp", "udp"]
    segment: SegmentSpec = SegmentSpec()
    table_size: Annotated[int, Field(ge=2, le=MAX_TABLE_SIZE)] | None = None
    backends: list[BackendSpec] = []

    @field_validator("vip")
    @classmethod
    def _vip(cls, v: IPAddress) -> IPAddress:
        if v.is_multicast or v.is_unspecified:
            raise ValueError(f"{v} cannot be a VIP")
        if isinstance(v, ipaddress.IPv6Address) and v.ipv4_mapped is not None:
            raise ValueError(f"{v} is IPv4-mapped: write the IPv4 address")
        return v

    def to_service(self) -> Service:
        key = ServiceKey(self.vip, self.port, PROTOCOLS[self.protocol], abi.SegType.VLAN, self.segment.id)
        backends = tuple(Backend(b.mac, b.vlan, b.weight, b.id or "") for b in self.backends)
        active = sum(1 for b in backends if b.weight > 0)
        size = self.table_size or default_table_size(max(active, 1))
        return Service(key, size, backends)


class DataplaneConfig(_Strict):
    services: list[ServiceSpec] = []

    def to_services(self) -> list[Service]:
        return [s.to_service() for s in self.services]


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


def _service_errors(i: int, s: ServiceSpec) -> list[str]:
    """Checks across fields of one service, with the exact place of each."""
    where = f"services[{i}]"
    errors = []
    seen: dict[tuple[str, int], int] = {}
    ids: dict[str, int] = {}
    for j, b in enumerate(s.backends):
        if (b.mac, b.vlan) in seen:
            errors.append(
                f"{where}.backends[{j}]: duplicates backends[{seen[(b.mac, b.vlan)]}] ({b.mac} vlan {b.vlan})"
            )
        seen.setdefault((b.mac, b.vlan), j)
        ident = b.id or f"{b.mac}@{b.vlan}"
        if ident in ids and (b.mac, b.vlan) != (s.backends[ids[ident]].mac, s.backends[ids[ident]].vlan):
            errors.append(f"{where}.backends[{j}].id: {ident!r} is already the id of backends[{ids[ident]}]")
        ids.setdefault(ident, j)
    if len(s.backends) > abi.MAX_BACKENDS:
        errors.append(f"{where}.backends: {len(s.backends)} backends; a service holds at most {abi.MAX_BACKENDS}")
    if s.table_size is not None:
        active = sum(1 for b in s.backends if b.weight > 0)
        if not is_prime(s.table_size):
            errors.append(f"{where}.table_size: {s.table_size} is not prime (Maglev needs a prime)")
        elif s.table_size < active:
            errors.append(f"{where}.table_size: {s.table_size} is smaller than the {active} active backends")
    return errors


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
    errors: list[str] = []
    seen: dict[tuple[object, ...], int] = {}
    for i, s in enumerate(cfg.services):
        errors += _service_errors(i, s)
        k = (s.vip, s.port, s.protocol, s.segment.type, s.segment.id)
        if k in seen:
            errors.append(
                f"services[{i}]: duplicates services[{seen[k]}] "
                f"({s.vip} {s.protocol}/{s.port} {s.segment.type} {s.segment.id})"
            )
        seen.setdefault(k, i)
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg


def load_config(path: str | Path) -> DataplaneConfig:
    """Read and validate a YAML or JSON desired-state file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping with a 'services' list")
    return parse_config(data)
