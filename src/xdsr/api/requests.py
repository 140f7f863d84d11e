"""Octavia v2 request bodies as pydantic models.

Requests are validated here, field by field, before anything is read from
the store. Octavia fields that xdsr cannot honour are still declared — with
the only value accepted (empty, -1, false, "NONE") as their schema — so that
a client sending them gets a 400 that says why (l2dsr.py) rather than
"unknown attribute". Anything else unknown is refused as unknown.

Each attribute is written once per object here; the API server derives from
these models what it copies into the stored document and what an update may
change (xdsr.apiserver.attributes).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from xdsr.api.fields import (
    AdditionalVips,
    AllowedCidrs,
    Backup,
    ChosenId,
    ClientAuth,
    ConnectionLimit,
    ExpectedCodes,
    Flavor,
    HmHttpExtra,
    HmType,
    Hsts,
    HstsFlag,
    HttpMethod,
    InsertHeaders,
    Int32,
    L7Policies,
    LbAlgorithm,
    LbnGroup,
    ListenerProtocol,
    MacAddress,
    MemberAddress,
    Name,
    PoolProtocol,
    Port,
    ProjectId,
    Provider,
    Retries,
    SessionPersistence,
    TableSize,
    Tags,
    TimeoutMs,
    TlsEnabled,
    TlsList,
    TlsRef,
    UrlPath,
    VipAddress,
    VipSgIds,
    VtepAddress,
    Weight,
)
from xdsr.model.agent import Segment


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TlsListenerFields(_In):
    default_tls_container_ref: TlsRef = None
    sni_container_refs: TlsList = None
    client_ca_tls_container_ref: TlsRef = None
    client_authentication: ClientAuth = None
    client_crl_container_ref: TlsRef = None
    tls_ciphers: TlsRef = None
    tls_versions: TlsList = None
    alpn_protocols: TlsList = None
    hsts_max_age: Hsts = None
    hsts_include_subdomains: HstsFlag = None
    hsts_preload: HstsFlag = None
    insert_headers: InsertHeaders = None
    allowed_cidrs: AllowedCidrs = None


class _TlsPoolFields(_In):
    session_persistence: SessionPersistence = None
    tls_enabled: TlsEnabled = None
    tls_container_ref: TlsRef = None
    ca_tls_container_ref: TlsRef = None
    crl_container_ref: TlsRef = None
    tls_ciphers: TlsRef = None
    tls_versions: TlsList = None
    alpn_protocols: TlsList = None


class MemberInline(_In):
    id: ChosenId = None
    name: Name | None = None
    admin_state_up: bool = True
    address: MemberAddress
    protocol_port: Port
    weight: Weight = 1
    backup: Backup = None
    subnet_id: UUID | None = None
    monitor_address: MemberAddress | None = None
    monitor_port: Port | None = None
    tags: Tags | None = None
    mac_address: MacAddress | None = None
    segment: Segment | None = Field(None, description="xdsr: the member's segment; null = the VIP's segment.")
    vtep_address: VtepAddress | None = None


class MemberCreate(MemberInline):
    project_id: ProjectId | None = None


class MemberUpdate(_In):
    name: Name | None = None
    admin_state_up: bool | None = None
    weight: Weight | None = None
    backup: Backup = None
    monitor_address: MemberAddress | None = None
    monitor_port: Port | None = None
    tags: Tags | None = None
    mac_address: MacAddress | None = None
    segment: Segment | None = None
    vtep_address: VtepAddress | None = None


class HealthMonitorInline(_In):
    id: ChosenId = None
    name: Name | None = None
    type: HmType
    delay: Int32
    timeout: Int32
    max_retries: Retries
    max_retries_down: Retries = 3
    http_method: HttpMethod | None = None
    url_path: UrlPath | None = None
    expected_codes: ExpectedCodes | None = None
    admin_state_up: bool = True
    tags: Tags | None = None
    http_version: HmHttpExtra = None
    domain_name: HmHttpExtra = None


class HealthMonitorCreate(HealthMonitorInline):
    pool_id: UUID
    project_id: ProjectId | None = None


class HealthMonitorUpdate(_In):
    name: Name | None = None
    delay: Int32 | None = None
    timeout: Int32 | None = None
    max_retries: Retries | None = None
    max_retries_down: Retries | None = None
    http_method: HttpMethod | None = None
    url_path: UrlPath | None = None
    expected_codes: ExpectedCodes | None = None
    admin_state_up: bool | None = None
    tags: Tags | None = None
    http_version: HmHttpExtra = None
    domain_name: HmHttpExtra = None


class PoolInline(_TlsPoolFields):
    id: ChosenId = None
    name: Name | None = None
    description: Name | None = None
    admin_state_up: bool = True
    protocol: PoolProtocol
    lb_algorithm: LbAlgorithm
    healthmonitor: HealthMonitorInline | None = None
    members: list[MemberInline] | None = None
    tags: Tags | None = None
    table_size: TableSize | None = None


class PoolCreate(PoolInline):
    listener_id: UUID | None = None
    loadbalancer_id: UUID | None = None
    project_id: ProjectId | None = None


class PoolUpdate(_TlsPoolFields):
    name: Name | None = None
    description: Name | None = None
    admin_state_up: bool | None = None
    lb_algorithm: LbAlgorithm | None = None
    tags: Tags | None = None
    table_size: TableSize | None = None


class _ListenerCommon(_TlsListenerFields):
    name: Name | None = None
    description: Name | None = None
    timeout_client_data: TimeoutMs | None = None
    timeout_member_connect: TimeoutMs | None = None
    timeout_member_data: TimeoutMs | None = None
    timeout_tcp_inspect: TimeoutMs | None = None
    tags: Tags | None = None
    connection_limit: ConnectionLimit = None


class ListenerInline(_ListenerCommon):
    id: ChosenId = None
    admin_state_up: bool = True
    protocol: ListenerProtocol
    protocol_port: Port
    default_pool: PoolInline | None = None
    # In a fully populated create: a pool of the same request, by the id the
    # client chose for it (xdsr extension; Octavia links them by name only).
    default_pool_id: UUID | None = None
    l7policies: L7Policies = None


class ListenerCreate(ListenerInline):
    loadbalancer_id: UUID
    project_id: ProjectId | None = None


class ListenerUpdate(_ListenerCommon):
    admin_state_up: bool | None = None
    default_pool_id: UUID | None = None


def _vip_required(schema: dict[str, Any]) -> None:
    schema.setdefault("required", []).append("vip_address")


class LoadBalancerCreate(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_vip_required)

    id: ChosenId = None
    name: Name | None = None
    description: Name | None = None
    admin_state_up: bool = True
    vip_address: VipAddress = None
    vip_port_id: UUID | None = None
    vip_subnet_id: UUID | None = None
    vip_network_id: UUID | None = None
    vip_qos_policy_id: UUID | None = None
    vip_segment: Segment | None = Field(
        None, description="xdsr: the segment the VIP's traffic arrives on; default untagged."
    )
    project_id: ProjectId | None = None
    lbn_group: LbnGroup | None = None
    listeners: list[ListenerInline] | None = None
    pools: list[PoolInline] | None = None
    provider: Provider = None
    flavor_id: Flavor = None
    availability_zone: Name | None = None
    tags: Tags | None = None
    additional_vips: AdditionalVips = None
    vip_sg_ids: VipSgIds = None


class LoadBalancerUpdate(_In):
    name: Name | None = None
    description: Name | None = None
    admin_state_up: bool | None = None
    vip_qos_policy_id: UUID | None = None
    tags: Tags | None = None


class LoadBalancerCreateRequest(_In):
    loadbalancer: LoadBalancerCreate


class LoadBalancerUpdateRequest(_In):
    loadbalancer: LoadBalancerUpdate


class ListenerCreateRequest(_In):
    listener: ListenerCreate


class ListenerUpdateRequest(_In):
    listener: ListenerUpdate


class PoolCreateRequest(_In):
    pool: PoolCreate


class PoolUpdateRequest(_In):
    pool: PoolUpdate


class MemberCreateRequest(_In):
    member: MemberCreate


class MemberUpdateRequest(_In):
    member: MemberUpdate


class MembersBatchRequest(_In):
    members: list[MemberCreate]


class HealthMonitorCreateRequest(_In):
    healthmonitor: HealthMonitorCreate


class HealthMonitorUpdateRequest(_In):
    healthmonitor: HealthMonitorUpdate
