"""The HTTP edge: Octavia v2 request and response bodies as pydantic models.

Requests are validated here, field by field, before anything is read from
the store. Octavia fields that xdsr cannot honour are still declared — with
the only value accepted (empty, -1, false, "NONE") as their schema — so that
a client sending them gets a 400 that says why (l2dsr.py) rather than
"unknown attribute". Anything else unknown is refused as unknown.

Responses are rendered by render.py as plain dicts (so `fields=` can trim
them); the models below only document their shape in openapi.json. Their
properties are not marked required because `fields=` may select fewer.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, IPvAnyAddress, WithJsonSchema

from xdsr.api import l2dsr
from xdsr.dataplane.model import MAX_TABLE_SIZE, normalize_mac
from xdsr.maglev import is_prime
from xdsr.model.agent import Segment

# --- field types -------------------------------------------------------------

Name = Annotated[str, Field(max_length=255)]
ProjectId = Annotated[str, Field(min_length=1, max_length=36)]
Tags = list[Annotated[str, Field(max_length=255)]]
Port = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=256)]
# Octavia's bounds for the listener timeouts (milliseconds).
TimeoutMs = Annotated[int, Field(ge=0, le=31_536_000_000)]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Retries = Annotated[int, Field(ge=1, le=10)]
# xdsr: an id the client chooses (admin tokens only), so that a client with ids
# of its own — Octavia's provider driver — maps its objects 1:1.
ChosenId = Annotated[
    UUID | None,
    Field(description="xdsr: the object's id, chosen by the client (admin tokens only); default: a new UUID."),
]
# xdsr: an LB node group's name, as agents ask for it with --group.
LbnGroup = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="xdsr: place the load balancer on this group of LB nodes (lower-case letters, digits and "
        "dashes); default: the operator chooses.",
    ),
]

_IP_SCHEMA = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
IPAddress = Annotated[IPvAnyAddress, WithJsonSchema(_IP_SCHEMA)]


def _vip(v: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if v is None:
        raise ValueError(l2dsr.VIP_REQUIRED)
    if v.is_unspecified or v.is_multicast or v.is_loopback or v == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{v} cannot be a VIP: it must be a unicast address reachable from the network")
    if isinstance(v, ipaddress.IPv6Address) and v.ipv4_mapped is not None:
        raise ValueError(f"{v} is IPv4-mapped: write the IPv4 address")
    return v


VipAddress = Annotated[
    IPvAnyAddress | None,
    Field(validate_default=True),
    AfterValidator(_vip),
    WithJsonSchema({**_IP_SCHEMA, "description": "The VIP (required: xdsr allocates no addresses)."}),
]


def _mac(v: str) -> str:
    mac = normalize_mac(v)
    octets = [int(p, 16) for p in mac.split(":")]
    if octets[0] & 1:
        raise ValueError(f"{v!r} is a multicast/broadcast address, not a member's")
    if not any(octets):
        raise ValueError(f"{v!r} is the zero address")
    return mac


MacAddress = Annotated[
    str,
    AfterValidator(_mac),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$",
            "description": "xdsr: the member's unicast MAC; omitted or null = resolved by the LB nodes (ARP/ND).",
        }
    ),
]


def _table_size(v: int) -> int:
    if not is_prime(v):
        raise ValueError(f"{v} is not prime (a Maglev table size must be prime)")
    return v


TableSize = Annotated[
    int,
    Field(ge=2, le=MAX_TABLE_SIZE),
    AfterValidator(_table_size),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 2,
            "maximum": MAX_TABLE_SIZE,
            "description": "xdsr: Maglev table size, a prime; null = derived from the members (docs/maglev.md).",
        }
    ),
]


def _choice(allowed: tuple[str, ...], reasons: dict[str, str], what: str) -> Any:
    def check(v: str) -> str:
        if v in allowed:
            return v
        if v in reasons:
            raise ValueError(reasons[v])
        raise ValueError(f"{v!r} is not a {what}; one of {', '.join(allowed)}")

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(allowed)})]


ListenerProtocol = _choice(l2dsr.LISTENER_PROTOCOLS, l2dsr.PROTOCOL_REASONS, "listener protocol")
PoolProtocol = _choice(l2dsr.POOL_PROTOCOLS, l2dsr.PROTOCOL_REASONS, "pool protocol")
LbAlgorithm = _choice(
    l2dsr.LB_ALGORITHMS,
    l2dsr.ALGORITHM_REASONS,
    "load-balancing algorithm (both accepted values mean Maglev over the 5-tuple hash)",
)
HM_TYPES = ("HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT")
HmType = _choice(HM_TYPES, {"SCTP": "SCTP health monitors are not supported: xdsr serves no SCTP pools"}, "type")
HttpMethod = Literal["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]
UrlPath = Annotated[str, Field(max_length=2048, pattern=r"^/[^\s]*$")]
ExpectedCodes = Annotated[str, Field(max_length=255, pattern=r"^(\d{3}(\s*,\s*\d{3})*)$|^(\d{3}-\d{3})$")]


def _is_empty(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, str | list | dict) and len(v) == 0)


def refused(reason: str, schema: dict[str, Any], accept: Any = None) -> Any:
    """A known Octavia attribute that xdsr accepts only empty (or `accept`)."""

    def check(v: Any) -> Any:
        if _is_empty(v) or (accept is not None and v == accept and type(v) is type(accept)):
            return v
        raise ValueError(reason)

    return Annotated[Any, AfterValidator(check), WithJsonSchema({**schema, "description": f"Refused: {reason}."})]


_NULL = {"type": "null"}
_EMPTY_LIST = {"type": "array", "maxItems": 0}
_EMPTY_DICT = {"type": "object", "maxProperties": 0}
_FALSE = {"type": "boolean", "enum": [False]}

TlsRef = refused(l2dsr.TLS, _NULL)
TlsList = refused(l2dsr.TLS, _EMPTY_LIST)
TlsEnabled = refused(l2dsr.TLS, _FALSE)
ClientAuth = refused(l2dsr.TLS, {"type": "string", "enum": ["NONE"]}, accept="NONE")
Hsts = refused(l2dsr.HSTS, _NULL)
HstsFlag = refused(l2dsr.HSTS, _FALSE)
L7Policies = refused(l2dsr.L7, _EMPTY_LIST)
InsertHeaders = refused(l2dsr.INSERT_HEADERS, _EMPTY_DICT)
AllowedCidrs = refused(l2dsr.ALLOWED_CIDRS, _EMPTY_LIST)
SessionPersistence = refused(l2dsr.SESSION_PERSISTENCE, _NULL)
ConnectionLimit = refused(l2dsr.CONNECTION_LIMIT, {"type": "integer", "enum": [-1]}, accept=-1)
Backup = refused(l2dsr.BACKUP, _FALSE)
Flavor = refused(l2dsr.FLAVOR, _NULL)
AdditionalVips = refused(l2dsr.ADDITIONAL_VIPS, _EMPTY_LIST)
VipSgIds = refused(l2dsr.VIP_SG_IDS, _EMPTY_LIST)
Provider = refused(l2dsr.PROVIDER, {"type": "string", "enum": ["xdsr"]}, accept="xdsr")
HmHttpExtra = refused(l2dsr.HM_HTTP_VERSION, _NULL)


# --- requests ----------------------------------------------------------------


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
    address: IPAddress
    protocol_port: Port
    weight: Weight = 1
    backup: Backup = None
    subnet_id: UUID | None = None
    monitor_address: IPAddress | None = None
    monitor_port: Port | None = None
    tags: Tags | None = None
    mac_address: MacAddress | None = None
    segment: Segment | None = Field(None, description="xdsr: the member's segment; null = the VIP's segment.")


class MemberCreate(MemberInline):
    project_id: ProjectId | None = None


class MemberUpdate(_In):
    name: Name | None = None
    admin_state_up: bool | None = None
    weight: Weight | None = None
    backup: Backup = None
    monitor_address: IPAddress | None = None
    monitor_port: Port | None = None
    tags: Tags | None = None
    mac_address: MacAddress | None = None
    segment: Segment | None = None


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


# --- responses ---------------------------------------------------------------

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
    address: str
    protocol_port: int
    weight: int
    backup: bool
    subnet_id: str | None
    monitor_address: str | None
    monitor_port: int | None
    vnic_type: str
    mac_address: str | None
    segment: Segment | None


class _HealthMonitorBase(_Common):
    type: str
    delay: int
    timeout: int
    max_retries: int
    max_retries_down: int
    http_method: str | None
    url_path: str | None
    expected_codes: str | None
    http_version: None
    domain_name: None


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
    tls_enabled: bool
    tls_container_ref: None
    ca_tls_container_ref: None
    crl_container_ref: None
    tls_ciphers: None
    tls_versions: None
    alpn_protocols: None
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
    default_tls_container_ref: None
    sni_container_refs: list[str]
    l7policies: list[IdRef]
    insert_headers: dict[str, str]
    timeout_client_data: int | None
    timeout_member_connect: int | None
    timeout_member_data: int | None
    timeout_tcp_inspect: int | None
    client_ca_tls_container_ref: None
    client_authentication: str
    client_crl_container_ref: None
    allowed_cidrs: None
    tls_ciphers: None
    tls_versions: None
    alpn_protocols: None
    hsts_max_age: None
    hsts_include_subdomains: bool
    hsts_preload: bool


class ListenerOut(_ListenerBase):
    loadbalancers: list[IdRef]


class ListenerFullOut(_ListenerBase):
    pass


class _LoadBalancerBase(_Common):
    description: str
    vip_address: str
    vip_port_id: str | None
    vip_subnet_id: str | None
    vip_network_id: str | None
    vip_qos_policy_id: str | None
    vip_segment: Segment
    lbn_group: str | None
    vip_vnic_type: str
    additional_vips: list[Any]
    provider: str
    flavor_id: str
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
