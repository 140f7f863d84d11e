"""Octavia v2 response bodies as pydantic models.

The API server renders stored documents as plain dicts (so that `fields=`
can trim them) and derives from these models what it renders and what a list
filters and sorts on (xdsr.apiserver.attributes, xdsr.apiserver.listing);
openapi.json shows them. Their properties are not marked required because
`fields=` may select fewer.

An attribute with a default is one the stored document does not hold: an
Octavia attribute xdsr refuses (or a constant, like `vnic_type`), shown with
the neutral value Octavia itself shows when it is unset, so that clients
that read them (gophercloud, the Octavia dashboard) keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xdsr.model.agent import Segment
from xdsr.model.checks import IPAddress


@dataclass(frozen=True)
class FilterAs:
    """How a list filters on an attribute when its type here does not say:
    an address (compared as one), or an always-null attribute that Octavia's
    clients filter on with Octavia's type for it."""

    type: Any


# An IP address as text; `?address=2001:db8::1` matches 2001:DB8:0::1.
AddressText = Annotated[str, FilterAs(IPAddress)]
# Always null here, and in Octavia a string (or integer) that lists filter on.
NullStr = Annotated[None, FilterAs(str)]
NullInt = Annotated[None, FilterAs(int)]

ProvisioningStatus = Literal["ACTIVE", "DELETED", "ERROR", "PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE"]
OperatingStatus = Literal["ONLINE", "DRAINING", "OFFLINE", "DEGRADED", "ERROR", "NO_MONITOR"]


def _optional_properties(schema: dict[str, Any]) -> None:
    schema.pop("required", None)


class _Out(BaseModel):
    # Every property is present unless `fields=` selects fewer.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_optional_properties)


class IdRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class PageLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    href: str
    rel: Literal["next", "previous"]


class _Common(_Out):
    id: str
    name: str
    provisioning_status: ProvisioningStatus
    operating_status: OperatingStatus
    admin_state_up: bool
    project_id: str
    created_at: str
    updated_at: str | None
    tags: list[str]


class MemberOut(_Common):
    address: AddressText
    protocol_port: int
    weight: int
    backup: bool
    subnet_id: str | None
    monitor_address: AddressText | None
    monitor_port: int | None
    vnic_type: str = "normal"
    mac_address: str | None
    segment: Segment | None
    vtep_address: AddressText | None


class _HealthMonitorBase(_Common):
    type: str
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int
    http_method: str | None
    url_path: str | None
    expected_codes: str | None
    http_version: None = None
    domain_name: None = None


class HealthMonitorOut(_HealthMonitorBase):
    pools: list[IdRef]


class HealthMonitorFullOut(_HealthMonitorBase):
    pass


class _PoolBase(_Common):
    description: str
    protocol: str
    lb_algorithm: str
    session_persistence: None
    listeners: list[IdRef]
    healthmonitor_id: str | None
    tls_enabled: bool = False
    tls_container_ref: NullStr = None
    ca_tls_container_ref: NullStr = None
    crl_container_ref: NullStr = None
    tls_ciphers: NullStr = None
    tls_versions: None = None
    alpn_protocols: None = None
    table_size: int | None


class PoolOut(_PoolBase):
    loadbalancers: list[IdRef]
    members: list[IdRef]


class PoolFullOut(_PoolBase):
    members: list[MemberOut]
    healthmonitor: HealthMonitorFullOut | None


class _ListenerBase(_Common):
    description: str
    protocol: str
    protocol_port: int
    connection_limit: int
    default_pool_id: str | None
    default_tls_container_ref: NullStr = None
    sni_container_refs: list[str] = []
    l7policies: list[IdRef] = []
    insert_headers: dict[str, str] = {}
    timeout_client_data: int | None
    timeout_member_connect: int | None
    timeout_member_data: int | None
    timeout_tcp_inspect: int | None
    client_ca_tls_container_ref: NullStr = None
    client_authentication: str = "NONE"
    client_crl_container_ref: NullStr = None
    allowed_cidrs: None = None
    tls_ciphers: NullStr = None
    tls_versions: None = None
    alpn_protocols: None = None
    hsts_max_age: NullInt = None
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False


class ListenerOut(_ListenerBase):
    loadbalancers: list[IdRef]


class ListenerFullOut(_ListenerBase):
    pass


class _LoadBalancerBase(_Common):
    description: str
    vip_address: AddressText
    vip_port_id: str | None
    vip_subnet_id: str | None
    vip_network_id: str | None
    vip_qos_policy_id: str | None
    vip_segment: Segment
    lbn_group: str | None
    vip_vnic_type: str = "normal"
    additional_vips: list[Any] = []
    provider: str
    flavor_id: str = ""
    availability_zone: str | None


class LoadBalancerOut(_LoadBalancerBase):
    listeners: list[IdRef]
    pools: list[IdRef]


class LoadBalancerFullOut(_LoadBalancerBase):
    listeners: list[ListenerFullOut]
    pools: list[PoolFullOut]


class LoadBalancerRoot(BaseModel):
    loadbalancer: LoadBalancerOut


class LoadBalancerCreatedRoot(BaseModel):
    # Octavia answers a create that carried listeners or pools with the full tree.
    loadbalancer: LoadBalancerOut | LoadBalancerFullOut


class LoadBalancersRoot(BaseModel):
    loadbalancers: list[LoadBalancerOut]
    loadbalancers_links: list[PageLink]


class ListenerRoot(BaseModel):
    listener: ListenerOut


class ListenersRoot(BaseModel):
    listeners: list[ListenerOut]
    listeners_links: list[PageLink]


class PoolRoot(BaseModel):
    pool: PoolOut


class PoolsRoot(BaseModel):
    pools: list[PoolOut]
    pools_links: list[PageLink]


class MemberRoot(BaseModel):
    member: MemberOut


class MembersRoot(BaseModel):
    members: list[MemberOut]
    members_links: list[PageLink]


class HealthMonitorRoot(BaseModel):
    healthmonitor: HealthMonitorOut


class HealthMonitorsRoot(BaseModel):
    healthmonitors: list[HealthMonitorOut]
    healthmonitors_links: list[PageLink]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberStatusOut(_Strict):
    id: str
    name: str
    operating_status: OperatingStatus
    provisioning_status: ProvisioningStatus
    address: str
    protocol_port: int


class HealthMonitorStatusOut(_Strict):
    id: str
    name: str
    type: str
    provisioning_status: ProvisioningStatus
    operating_status: OperatingStatus


class PoolStatusOut(_Strict):
    id: str
    name: str
    provisioning_status: ProvisioningStatus
    operating_status: OperatingStatus
    health_monitor: HealthMonitorStatusOut | None = Field(None, description="Absent when the pool has none.")
    members: list[MemberStatusOut]


class ListenerStatusOut(_Strict):
    id: str
    name: str
    operating_status: OperatingStatus
    provisioning_status: ProvisioningStatus
    pools: list[PoolStatusOut]


class LoadBalancerStatusOut(_Strict):
    id: str
    name: str
    operating_status: OperatingStatus
    provisioning_status: ProvisioningStatus
    listeners: list[ListenerStatusOut]


class Statuses(_Strict):
    loadbalancer: LoadBalancerStatusOut


class StatusRoot(_Strict):
    statuses: Statuses


class ObjectStatusOut(_Strict):
    id: str
    provisioning_status: ProvisioningStatus
    operating_status: OperatingStatus


class ListenerSyncOut(ObjectStatusOut):
    bytes_in: int = Field(description="Bytes the LB nodes forwarded for this listener.")
    packets_in: int = Field(description="Packets the LB nodes forwarded for this listener.")


class MemberSyncOut(ObjectStatusOut):
    pool_id: str


class LoadBalancerSyncOut(ObjectStatusOut):
    error: str | None = Field(description="Why provisioning_status is ERROR, as the operator found it; else null.")
    listeners: list[ListenerSyncOut]
    pools: list[ObjectStatusOut]
    members: list[MemberSyncOut]
    healthmonitors: list[ObjectStatusOut]


class SyncStatusesRoot(_Strict):
    """xdsr: every visible load balancer's statuses, for clients that follow
    them (Octavia's xdsr provider agent): one request instead of one per object."""

    statuses: list[LoadBalancerSyncOut]


class StatsOut(_Strict):
    bytes_in: int
    bytes_out: int = Field(description="Always 0: replies go from the members to the clients directly (L2DSR).")
    active_connections: int = Field(description="Always 0: LB nodes keep no per-connection state.")
    total_connections: int = Field(description="Always 0: LB nodes count packets, not connections.")
    request_errors: int
    packets_in: int = Field(description="xdsr: packets forwarded to the members.")


class StatsRoot(_Strict):
    stats: StatsOut


class VersionLink(_Strict):
    href: str
    rel: str


class Version(_Strict):
    id: str
    status: Literal["CURRENT", "SUPPORTED", "DEPRECATED"]
    updated: str
    links: list[VersionLink]


class Versions(_Strict):
    versions: list[Version]
