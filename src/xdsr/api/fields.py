"""The vocabulary's field types: what one attribute of a request may hold.

Value checks that other layers make too (VIP, member address, MAC, VLAN,
table size) come from xdsr.model.checks; the bounds only Octavia's API has
(weights up to 256, timeouts, name lengths) and the refusals of what L2DSR
cannot do (l2dsr.py) are written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BeforeValidator, Field, GetJsonSchemaHandler, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue

from xdsr.api import l2dsr
from xdsr.model import checks

# Characters no name, description or tag may hold: C0 and C1 controls (NUL,
# newline, escape: they corrupt logs and terminals), the line and paragraph
# separators, and Unicode's bidirectional overrides and isolates, which make
# a name display as another ("Trojan Source").
FORBIDDEN_CHARS = frozenset(
    [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)


def _plain(v: str) -> str:
    bad = next((c for c in v if c in FORBIDDEN_CHARS), None)
    if bad is not None:
        raise ValueError(f"contains the control or bidirectional-formatting character U+{ord(bad):04X}")
    return v


# Text a user gives an object and others see: a name, a description, a tag.
Text = Annotated[str, AfterValidator(_plain)]
Name = Annotated[Text, Field(max_length=255)]
ProjectId = Annotated[Text, Field(min_length=1, max_length=36)]
Tags = list[Annotated[Text, Field(max_length=255)]]
Port = Annotated[int, Field(ge=1, le=65535)]
# Octavia's bound; the nodes take any u32 (checks.Weight).
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


@dataclass(frozen=True)
class Describe:
    """A description for openapi.json that stays with the type (a Field's
    description is lost when the type is used in `X | None`)."""

    text: str

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        return {**schema, "description": self.text}


def _given(v: object) -> object:
    # Octavia would allocate a VIP from the subnet; xdsr allocates nothing.
    if v is None:
        raise ValueError(l2dsr.VIP_REQUIRED)
    return v


VipAddress = Annotated[
    checks.VipAddress,
    BeforeValidator(_given),
    Field(validate_default=True, description="The VIP (required: xdsr allocates no addresses)."),
]
MemberAddress = checks.MemberAddress
MacAddress = Annotated[
    checks.Mac,
    Describe(
        "xdsr: the member's unicast MAC; omitted or null = resolved by the LB nodes (ARP/ND). Required on a "
        "VXLAN or Geneve segment."
    ),
]
VtepAddress = Annotated[
    checks.VtepAddress,
    Describe(
        "xdsr: a member on a VXLAN or Geneve segment: the tunnel endpoint (VTEP) its frames are sent to, "
        "encapsulated; required for a member on an overlay segment, refused for one on a VLAN."
    ),
]
TableSize = Annotated[
    checks.TableSize,
    Describe("xdsr: Maglev table size, a prime; null = derived from the members (docs/maglev.md)."),
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
HmType = _choice(l2dsr.HM_TYPES, l2dsr.HM_TYPE_REASONS, "type")
HttpMethod = Literal["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]
UrlPath = Annotated[str, Field(max_length=2048, pattern=r"^/[^\s]*$")]
ExpectedCodes = Annotated[str, Field(max_length=255, pattern=r"^(\d{3}(\s*,\s*\d{3})*)$|^(\d{3}-\d{3})$")]


# --- what xdsr refuses -------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """Marks an Octavia attribute that xdsr accepts only with its neutral
    value: it is never stored, copied or updated (xdsr.apiserver.attributes)."""

    reason: str


def is_refused(field: FieldInfo) -> bool:
    return any(isinstance(m, Refused) for m in field.metadata)


def _is_empty(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, str | list | dict) and len(v) == 0)


def refused(reason: str, schema: dict[str, Any], accept: Any = None) -> Any:
    """A known Octavia attribute that xdsr accepts only empty (or `accept`)."""

    def check(v: Any) -> Any:
        if _is_empty(v) or (accept is not None and v == accept and type(v) is type(accept)):
            return v
        raise ValueError(reason)

    return Annotated[
        Any, AfterValidator(check), WithJsonSchema({**schema, "description": f"Refused: {reason}."}), Refused(reason)
    ]


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
