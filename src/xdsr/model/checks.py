"""The one implementation of each value check the control plane makes.

The API server, the Octavia provider driver, the agent and `xdsr dp apply`
all refuse the same values with the same words because they all call these
functions (or use the pydantic types built from them below). A check lives
here when two layers need it; a rule that only one layer has (an Octavia
bound, a kernel limit) stays with that layer.

Pure Python and pydantic only: the Octavia driver imports this module inside
Octavia's API process, so nothing here may pull in FastAPI, numpy or the
data plane.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema

from xdsr.maglev.primes import is_prime

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The largest Maglev table a service may ask for: 2^22 slots (8 MiB of
# slots). A sanity bound on input, far above what Maglev needs for any pool.
MAX_TABLE_SIZE = 4_194_301
MAX_VLAN = 4094  # 802.1Q: 0 means untagged, 4095 is reserved
MAX_VNI = 2**24 - 1  # VXLAN and Geneve: a 24-bit virtual network identifier
SEGMENT_TYPES = ("vlan", "vxlan", "geneve")
OVERLAYS = ("vxlan", "geneve")  # segments reached through a tunnel endpoint
MAX_WEIGHT = 2**32 - 1  # the kernel's backend weight is a u32

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def ip_address(v: object) -> IPAddress:
    """An address given as text (or already parsed); numbers are refused.

    pydantic's own IP types turn the JSON number 5 into 0.0.0.5, which no
    client means."""
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return v
    if not isinstance(v, str):
        raise ValueError("must be an IPv4 or IPv6 address written as a string")
    try:
        # Most addresses are IPv4: the C library parses them several times
        # faster (a node receiving a whole group parses tens of thousands),
        # as strictly (four decimal octets, no leading zeros); anything it
        # refuses takes the long way, which decides.
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, v))
    except (OSError, ValueError):
        pass
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a valid IPv4 or IPv6 address") from None


def unicast_address(v: object, role: str = "an address") -> IPAddress:
    """A unicast address another host can send to: what a VIP or a member must be."""
    addr = ip_address(v)
    if isinstance(addr, ipaddress.IPv4Address):
        # ipaddress's properties below, on the integer (tens of thousands of
        # members are checked when a node receives a whole group).
        a = int(addr)
        bad = a == 0 or a >> 28 == 0xE or a >> 24 == 127 or a == 0xFFFFFFFF
    else:
        bad = addr.is_unspecified or addr.is_multicast or addr.is_loopback
    if bad:
        raise ValueError(f"{addr} cannot be {role}: it must be a unicast address reachable from the network")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"{addr} is IPv4-mapped: write the IPv4 address")
    return addr


def vip(v: object) -> IPAddress:
    return unicast_address(v, "a VIP")


def member_address(v: object) -> IPAddress:
    return unicast_address(v, "a member's address")


def vtep(v: object) -> IPAddress:
    """A tunnel endpoint (VXLAN/Geneve): the underlay address a member's
    frames are sent to, encapsulated."""
    return unicast_address(v, "a tunnel endpoint")


# A MAC already written as normalize_mac writes it (as every stored one is).
_NORMAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def normalize_mac(mac: str) -> str:
    """``AA-bb-c-...`` → ``aa:bb:0c:...``; ValueError if it is not a MAC."""
    if _NORMAL_MAC.fullmatch(mac):
        return mac
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ValueError(f"invalid MAC address {mac!r}")
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        raise ValueError(f"invalid MAC address {mac!r}") from None
    return ":".join(f"{o:02x}" for o in octets)


def unicast_mac(v: object) -> str:
    """A member's MAC: normalized, unicast and not all zeros."""
    if not isinstance(v, str):
        raise ValueError("must be a MAC address written as a string")
    mac = normalize_mac(v)
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{v!r} is a multicast/broadcast address, not a member's")
    if mac == "00:00:00:00:00:00":
        raise ValueError(f"{v!r} is the zero address")
    return mac


def vlan(v: int) -> int:
    if not 0 <= v <= MAX_VLAN:
        raise ValueError(f"VLAN id {v} is outside 0-{MAX_VLAN} (0 = untagged)")
    return v


def vni(v: int) -> int:
    # VNI 0 is valid on the wire, but Neutron and EVPN fabrics never hand it
    # out, and a 0 left in a file is far more often a forgotten field.
    if not 1 <= v <= MAX_VNI:
        raise ValueError(f"VNI {v} is outside 1-{MAX_VNI}")
    return v


def segment(kind: str, ident: int) -> int:
    """A segment's id, checked against what its type can carry."""
    if kind not in SEGMENT_TYPES:
        raise ValueError(f"segment type {kind!r} is not one of {', '.join(SEGMENT_TYPES)}")
    return vlan(ident) if kind == "vlan" else vni(ident)


def table_size(v: int) -> int:
    """A Maglev table size: prime (so every permutation visits every slot), and bounded."""
    if not 2 <= v <= MAX_TABLE_SIZE:
        raise ValueError(f"{v} is outside 2..{MAX_TABLE_SIZE}")
    if not is_prime(v):
        raise ValueError(f"{v} is not prime (a Maglev table size must be prime)")
    return v


def table_holds(size: int, weighted_members: int) -> int:
    """A table must have at least one slot per weighted member."""
    if size < weighted_members:
        raise ValueError(f"{size} is below the {weighted_members} weighted members")
    return size


# --- the same checks as pydantic field types --------------------------------

_IP_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}

# The raw value reaches the check (BeforeValidator on Any) so that a number
# is refused instead of coerced.
Address = Annotated[Any, BeforeValidator(ip_address), WithJsonSchema(_IP_SCHEMA)]
VipAddress = Annotated[Any, BeforeValidator(vip), WithJsonSchema(_IP_SCHEMA)]
MemberAddress = Annotated[Any, BeforeValidator(member_address), WithJsonSchema(_IP_SCHEMA)]
VtepAddress = Annotated[Any, BeforeValidator(vtep), WithJsonSchema(_IP_SCHEMA)]
# An address in a stored document (model/loadbalancer.py): ip_address
# alone, since the API server ran the check of its role (vip, member_address,
# vtep) before writing it, and the operator parses every stored load
# balancer again at each change of it (pydantic's IPvAnyAddress took twice
# as long, and serialised a union of two types). The same text gives the
# same (immutable) address object, remembered: a document changed in one
# member is parsed again with the same hundreds of addresses. Shown in JSON
# as text, and in JSON schema as IPvAnyAddress was (the CRDs are made from it).
_remembered = functools.lru_cache(maxsize=1 << 16)(ip_address)


def _stored_address(v: object) -> IPAddress:
    return _remembered(v) if isinstance(v, str) else ip_address(v)


StoredAddress = Annotated[
    Any,
    PlainValidator(_stored_address),
    PlainSerializer(str, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "format": "ipvanyaddress"}),
]
Mac = Annotated[
    Any,
    BeforeValidator(unicast_mac),
    WithJsonSchema({"type": "string", "pattern": "^[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2}){5}$"}),
]
VlanId = Annotated[int, Field(ge=0, le=MAX_VLAN)]
Vni = Annotated[int, Field(ge=1, le=MAX_VNI)]
SegmentType = Literal["vlan", "vxlan", "geneve"]
TableSize = Annotated[
    int,
    Field(ge=2, le=MAX_TABLE_SIZE),
    AfterValidator(table_size),
    WithJsonSchema({"type": "integer", "minimum": 2, "maximum": MAX_TABLE_SIZE}),
]
Weight = Annotated[int, Field(ge=0, le=MAX_WEIGHT)]
