"""Which network segment a subnet is on: xdsr's stand-in for Neutron.

Octavia clients name networks by subnet or network id (vip_subnet_id, a
member's subnet_id) and know nothing of VLANs; xdsr's nodes need the VLAN.
An operator lists the subnets in a file (`--networks-file`):

    subnets:
      - id: 4a7e5c52-...            # the subnet id clients use
        name: vlan100               # optional
        network_id: 9f0c0c1e-...    # optional
        cidr: 10.1.0.0/24           # optional: checked against addresses
        segment: {type: vlan, id: 100}

A request that gives a segment explicitly (vip_segment, a member's segment)
wins; otherwise the subnet's (or network's) segment is filled in and stored,
so the rest of xdsr never needs this file. The same subnets answer the
Networking API lookups the OpenStack client makes (routes/networking.py).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, IPvAnyNetwork, ValidationError

from xdsr.model.agent import Segment
from xdsr.model.loadbalancer import LoadBalancer


class NetworksError(ValueError):
    """The networks file is invalid."""


class Subnet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str | None = None  # optional: `openstack` also finds a subnet by name
    network_id: str | None = None
    cidr: IPvAnyNetwork | None = None
    segment: Segment


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subnets: list[Subnet] = []


class Networks:
    def __init__(self, subnets: list[Subnet] | None = None) -> None:
        self.by_subnet = {s.id: s for s in subnets or []}
        self.by_network: dict[str, Subnet] = {}
        for s in subnets or []:
            if s.network_id:
                self.by_network.setdefault(s.network_id, s)

    def subnet(self, subnet_id: str | None = None, network_id: str | None = None) -> Subnet | None:
        if subnet_id and subnet_id in self.by_subnet:
            return self.by_subnet[subnet_id]
        if network_id and network_id in self.by_network:
            return self.by_network[network_id]
        return None

    def complete(self, doc: LoadBalancer) -> None:
        """Fill in the segment of every member that has a known subnet and no segment."""
        for pool in doc.pools:
            for m in pool.members:
                if m.segment is None:
                    sn = self.subnet(m.subnet_id)
                    if sn is not None:
                        m.segment = sn.segment

    @staticmethod
    def outside(sn: Subnet, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return sn.cidr is not None and (sn.cidr.version != address.version or address not in sn.cidr)


def load_networks(path: str | Path) -> Networks:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return Networks(_File.model_validate(data).subnets)
    except OSError as exc:
        raise NetworksError(f"{path}: {exc.strerror}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise NetworksError(f"{path}: {exc}") from None
