"""xdsr.lab: network-namespace labs for end-to-end tests, the demo and the
benchmarks. See docs/lab.md.

    from xdsr.lab import FabricSpec, build_fabric

    with build_fabric(FabricSpec(n_lbns=3)) as fab:
        ns, ifname, mac = fab.lbn_trunk(0)       # attach the LBN program here
        fab.services()                           # the LB's desired state
        result = fab.tcp_client(0, conns=20)     # which backend served what

Modules:
  netns     Lab: namespaces and everything in them as one unit, torn down
            in reverse order; its processes
  network   Lab's links, bridge, addresses, routes, neighbours, sysctls
  programs  the lab's BPF programs (access ports, xdp_pass, xdp_census)
  netlink   the thread every pyroute2 call of a lab runs on
  process   LabProcess, a process inside a namespace
  registry  which labs exist; cleanup_stale
  commands  running iproute2/ethtool/sysctl; LabError; require_root
  wait      wait_until
  topology  FabricSpec, TenantSpec, the addressing plan, what was built
  fabric    FabricSpec -> Fabric: the L2DSR topology, built and used
  traffic   start/stop the echo servers and clients, parse their results
  echo      `python -m xdsr.lab.echo` (backend server, stdlib only)
  client    `python -m xdsr.lab.client` (TCP/UDP client, stdlib only)

Names are imported lazily: `python -m xdsr.lab.echo` runs inside many
namespaces at once and must not pay for pyroute2's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Lab": "netns",
    "LabError": "commands",
    "LabCommandError": "commands",
    "LabProcess": "process",
    "Iface": "network",
    "Veth": "network",
    "CensusKey": "programs",
    "UNTAGGED": "programs",
    "wait_until": "wait",
    "cleanup_stale": "registry",
    "lab_namespaces": "registry",
    "require_root": "commands",
    "FabricSpec": "topology",
    "TenantSpec": "topology",
    "Fabric": "fabric",
    "build_fabric": "fabric",
    "Service": "topology",
    "ServiceBackend": "topology",
    "LbnTrunk": "topology",
    "BackendRef": "topology",
    "EchoServer": "traffic",
    "TcpSession": "traffic",
    "TcpResult": "traffic",
    "UdpResult": "traffic",
    "ConnResult": "traffic",
    "FlowResult": "traffic",
    "start_echo": "traffic",
    "start_tcp_session": "traffic",
    "run_tcp_client": "traffic",
    "run_udp_client": "traffic",
}

__all__ = [
    "UNTAGGED",
    "BackendRef",
    "CensusKey",
    "ConnResult",
    "EchoServer",
    "Fabric",
    "FabricSpec",
    "FlowResult",
    "Iface",
    "Lab",
    "LabCommandError",
    "LabError",
    "LabProcess",
    "LbnTrunk",
    "Service",
    "ServiceBackend",
    "TcpResult",
    "TcpSession",
    "TenantSpec",
    "UdpResult",
    "Veth",
    "build_fabric",
    "cleanup_stale",
    "lab_namespaces",
    "require_root",
    "run_tcp_client",
    "run_udp_client",
    "start_echo",
    "start_tcp_session",
    "wait_until",
]

if TYPE_CHECKING:
    from .commands import LabCommandError, LabError, require_root
    from .fabric import Fabric, build_fabric
    from .netns import Lab
    from .network import Iface, Veth
    from .process import LabProcess
    from .programs import UNTAGGED, CensusKey
    from .registry import cleanup_stale, lab_namespaces
    from .topology import BackendRef, FabricSpec, LbnTrunk, Service, ServiceBackend, TenantSpec
    from .traffic import (
        ConnResult,
        EchoServer,
        FlowResult,
        TcpResult,
        TcpSession,
        UdpResult,
        run_tcp_client,
        run_udp_client,
        start_echo,
        start_tcp_session,
    )
    from .wait import wait_until


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xdsr.lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
