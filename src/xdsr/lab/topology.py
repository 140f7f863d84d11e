"""What a lab fabric is: its spec (FabricSpec, TenantSpec), the fixed names
and addressing plan, and plain frozen records of what was built (tenants,
LB nodes, backends, and the services the load balancer must know).
Building and using a fabric is fabric.py's job."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # a tenant name is part of namespace names

# Interface names inside the host namespaces (each namespace has its own,
# so they can be fixed); switch ports are named per host (see _SwitchPorts).
TRUNK_IF = "trunk"
HOST_IF = "eth0"
ROUTER_CLIENT_IF = "cl"
ROUTER_FRONTEND_IF = "fe"
ROUTER_BACKEND_IF = "be"
BRIDGE = "br0"

# Offsets of host addresses inside their subnets.
ROUTER_HOST = 1
CLIENT_HOST = 2
NEXTHOP_BASE = 11  # LBN i is the nexthop NEXTHOP_BASE + i on the frontend subnet
BACKEND_BASE = 11  # backend j has address BACKEND_BASE + j on the backend subnet
HEALTH_BASE = 240  # LBN i checks backends from HEALTH_BASE + i on each backend subnet


# -- the spec ------------------------------------------------------------------


@dataclass(frozen=True)
class TenantSpec:
    """One tenant; every field left None gets a default derived from the
    tenant's index t (see FabricSpec)."""

    name: str | None = None  # "t<t>"
    frontend_vid: int | None = None  # 10 + t
    backend_vid: int | None = None  # 100 + t
    n_backends: int = 3
    vip: str | None = None  # 10.200.<t>.10
    vip6: str | None = None  # fd00:200:<t>::10 (only when the fabric has IPv6)
    backend_subnet: str = "10.1.0.0/24"  # tenants may share it: each has its own router
    backend_subnet6: str = "fd00:1::/64"
    tcp_port: int = 80
    udp_port: int = 5001


@dataclass(frozen=True)
class FabricSpec:
    """What to build.

    Per tenant t the fixed addressing is: client link 172.16.<t>.0/24
    (client .2, router .1; IPv6 fd00:ac10:<t>::/64), frontend subnet
    10.255.<t>.0/24 (router .1, LBN i's nexthop .11+i; IPv6
    fd00:ff:<t>::/64).
    """

    n_lbns: int = 3
    tenants: tuple[TenantSpec, ...] = (TenantSpec(),)
    ipv6: bool = False
    prefix: str = "xl"
    echo_servers: bool = True  # start xdsr.lab.echo on every backend
    trunk_peer_program: str = "xdp_pass"  # or "xdp_census" to count what LBNs send back


# -- what was built --------------------------------------------------------------


class LbnTrunk(NamedTuple):
    netns: str
    ifname: str
    mac: str


class BackendRef(NamedTuple):
    netns: str
    mac: str
    vid: int
    ip: str
    name: str


@dataclass(frozen=True)
class LbnInfo:
    index: int
    netns: str
    ifname: str
    mac: str
    switch_port: str  # its peer on the bridge, where trunk_peer_program runs


@dataclass(frozen=True)
class BackendInfo:
    tenant: str
    index: int
    name: str  # what its echo server answers: "<tenant>-be<index>"
    netns: str
    ifname: str
    mac: str
    vid: int
    ip: str
    ip6: str | None
    switch_port: str


@dataclass(frozen=True)
class TenantInfo:
    index: int
    name: str
    frontend_vid: int
    backend_vid: int
    vip: str
    vip6: str | None
    tcp_port: int
    udp_port: int
    client_ns: str
    client_ip: str
    client_ip6: str | None
    router_ns: str
    router_client_ip: str
    router_client_ip6: str | None
    router_frontend_if: str
    router_frontend_mac: str
    router_frontend_ip: str
    router_frontend_ip6: str | None
    router_backend_if: str
    router_backend_mac: str
    router_backend_ip: str
    router_backend_ip6: str | None
    nexthops: tuple[str, ...]  # per LBN index
    nexthops6: tuple[str, ...] | None
    backend_subnet: str
    backend_subnet6: str | None
    backends: tuple[BackendInfo, ...]


@dataclass(frozen=True)
class ServiceBackend:
    name: str
    mac: str
    vid: int
    ip: str  # the backend's own address (health checks), not used for forwarding


@dataclass(frozen=True)
class Service:
    """One service as the load balancer must know it: frames for
    (vip, port, proto) arriving on VLAN `vid` go to one of `backends`,
    rewritten to the backend's MAC and VLAN."""

    tenant: str
    vip: str
    port: int
    proto: str  # "tcp" | "udp"
    seg_type: str  # "vlan"
    vid: int  # the tenant's frontend VLAN
    backends: tuple[ServiceBackend, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
