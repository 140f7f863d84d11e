"""Load balancers as stored: the user's intent (LoadBalancer, written by the
API server) and the observed state (LoadBalancerStatus, written by the
operator).

Field names follow OpenStack Octavia's v2 API so the API server and the
Octavia driver map 1:1. xdsr's own fields: `vip_segment` (the network segment
the VIP's traffic arrives on), a member's `mac_address`, `segment` and
`vtep_address` (its tunnel endpoint on a VXLAN or Geneve segment), a pool's
`table_size`.

A load balancer and all its children live in one document, so one
compare-and-swap covers any change to it. Every change bumps the document's
`generation` and stamps the changed child with it; the operator reports the
generation it has made real (`observed_generation`). The API server derives
PENDING_* from the difference, as Kubernetes does with observedGeneration.

Addresses are checked here only as addresses (checks.StoredAddress), not as
what their role requires (a unicast VIP, a member): the API server checked
that before writing the document (checks.vip, member_address, vtep), and the
operator runs the nodes' own checks on what it compiles from it before
anything is pushed (docs/operator.md, "Failure containment"). So a document
written by hand that slips a multicast member past this model is still
refused before it reaches a node, as before. What this model refuses is
what it refused with pydantic's IPvAnyAddress, and numbers besides (which
IPvAnyAddress took for addresses and no writer of these documents writes).
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xdsr.model.agent import Segment
from xdsr.model.checks import StoredAddress

ProvisioningStatus = Literal["ACTIVE", "DELETED", "ERROR", "PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE"]
OperatingStatus = Literal["ONLINE", "DRAINING", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR"]


# Values a deep copy shares instead of copying: nothing can change them.
_IMMUTABLE = (str, int, float, type(None), ipaddress.IPv4Address, ipaddress.IPv6Address, Segment)


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, list):
        return [_copied(v, memo) for v in value]
    return copy.deepcopy(value, memo)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        """A deep copy (model_copy(deep=True): the API server edits one of
        each document it changes), without copying what cannot change:
        pydantic's copies every address and string through copy.deepcopy,
        3 ms for a load balancer of 255 members, more than parsing it."""
        memo = {} if memo is None else memo
        cls = type(self)
        out = cls.__new__(cls)
        memo[id(self)] = out
        values = self.__dict__.copy()
        for k, v in values.items():
            if not isinstance(v, _IMMUTABLE):
                values[k] = _copied(v, memo)
        object.__setattr__(out, "__dict__", values)
        object.__setattr__(out, "__pydantic_extra__", None)  # extra="forbid": there is none
        object.__setattr__(out, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
        object.__setattr__(out, "__pydantic_private__", None)  # no private attributes
        return out


class _Object(_Doc):
    id: str
    project_id: str
    name: str = ""
    description: str = ""
    admin_state_up: bool = True
    tags: list[str] = []
    created_at: str  # ISO 8601, UTC
    updated_at: str | None = None
    generation: int = 1  # the LoadBalancer.generation of this object's last change


class Member(_Object):
    address: StoredAddress
    protocol_port: Annotated[int, Field(ge=1, le=65535)]
    weight: Annotated[int, Field(ge=0, le=256)] = 1
    subnet_id: str | None = None
    monitor_address: StoredAddress | None = None
    monitor_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    backup: bool = False
    mac_address: str | None = None  # xdsr: None = resolved by the LB nodes (ARP/ND)
    segment: Segment | None = None  # xdsr: None = the load balancer's vip_segment
    # xdsr, a member on a VXLAN/Geneve segment: its host's tunnel endpoint (None on a VLAN)
    vtep_address: StoredAddress | None = None


class HealthMonitor(_Object):
    pool_id: str
    type: str
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int = 3
    http_method: str | None = None
    url_path: str | None = None
    expected_codes: str | None = None


class Pool(_Object):
    protocol: Literal["TCP", "UDP"]
    lb_algorithm: Literal["ROUND_ROBIN", "SOURCE_IP_PORT"]
    session_persistence: None = None
    healthmonitor_id: str | None = None
    table_size: int | None = None  # xdsr: Maglev table size (prime); None = the operator chooses and keeps one
    members: list[Member] = []


class Listener(_Object):
    protocol: Literal["TCP", "UDP"]
    protocol_port: Annotated[int, Field(ge=1, le=65535)]
    default_pool_id: str | None = None
    connection_limit: int = -1
    timeout_client_data: int | None = None
    timeout_member_connect: int | None = None
    timeout_member_data: int | None = None
    timeout_tcp_inspect: int | None = None


class LoadBalancer(_Object):
    vip_address: StoredAddress
    vip_segment: Segment = Segment()  # xdsr: where the VIP's traffic arrives (e.g. its VLAN)
    lbn_group: str | None = None  # xdsr: place it on this group of LB nodes (None: the operator chooses)
    vip_network_id: str | None = None
    vip_subnet_id: str | None = None
    vip_port_id: str | None = None
    vip_qos_policy_id: str | None = None
    provider: str = "xdsr"
    flavor_id: str | None = None
    availability_zone: str | None = None
    # The last kind of change, for PENDING_<pending> while it is not observed.
    pending: Literal["CREATE", "UPDATE", "DELETE"] = "CREATE"
    deleting: bool = False  # deletion requested: the operator removes it everywhere, then the document
    listeners: list[Listener] = []
    pools: list[Pool] = []
    healthmonitors: list[HealthMonitor] = []


class ObjectStatus(_Doc):
    provisioning_status: ProvisioningStatus = "ACTIVE"
    operating_status: OperatingStatus = "ONLINE"


class LbnReport(_Doc):
    """One LB node's view of this load balancer."""

    # The group generation the node has applied, up to the one holding this
    # load balancer's latest rules (later ones do not concern it).
    applied_generation: int = 0
    forwarding: bool = False  # every service of the LB is installed on the node
    error: str | None = None
    # BGP (docs/bgp.md), None when the node speaks none (static routes): the
    # node's state as it registered it ("announcing", "drained", "withdrawn:
    # <why>", with "; sessions down: <peers>"), and whether it announces this
    # load balancer's VIP to every router: it forwards it, announces, and no
    # session is down. A node that forwards but does not announce carries
    # none of the VIP's traffic.
    bgp: str | None = None
    announcing: bool | None = None


class ListenerStats(_Doc):
    packets: int = 0
    bytes: int = 0


class LoadBalancerStatus(_Doc):
    id: str
    observed_generation: int = 0  # LoadBalancer.generation made real on every node of the group
    computed_for: int = 0  # LoadBalancer.generation this status judges: an ERROR here is current even if not observed
    group: str | None = None
    provisioning_status: ProvisioningStatus = "ACTIVE"
    operating_status: OperatingStatus = "ONLINE"
    error: str | None = None  # why provisioning_status is ERROR
    listeners: dict[str, ObjectStatus] = {}
    pools: dict[str, ObjectStatus] = {}
    members: dict[str, ObjectStatus] = {}
    healthmonitors: dict[str, ObjectStatus] = {}
    lbns: dict[str, LbnReport] = {}
    stats: dict[str, ListenerStats] = {}  # per listener, summed over the group's nodes
    updated_at: float = 0.0
