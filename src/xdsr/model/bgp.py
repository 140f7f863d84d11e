"""BGP toward the router: the agent's configuration file and what it reports.

An LB node announces a VIP (a /32 or /128) to the routers it peers with
while its data plane holds the VIP's services (docs/bgp.md). `BgpConfig`
is the file `xdsr agent --bgp-config FILE` reads; `BgpStatus` is what
`GET /v1/bgp` answers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

from xdsr.model.checks import IPAddress, VipAddress, VlanId, unicast_address

# 4-byte ASNs; 0 and AS_TRANS (23456, RFC 6793) never name a real AS.
Asn = Annotated[int, Field(ge=1, le=4_294_967_294)]
_U32 = Annotated[int, Field(ge=0, le=4_294_967_295)]
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
# "65000:100" (RFC 1997, 16-bit halves) or "65000:1:2" (large, RFC 8092, 32-bit parts)
_COMMUNITY_RE = re.compile(r"^\d+:\d+(:\d+)?$")


def _peer_address(v: object) -> IPAddress:
    return unicast_address(v, "a BGP peer")


def _next_hop(v: object) -> IPAddress:
    return unicast_address(v, "a next hop")


_IP_SCHEMA = {"type": "string", "format": "ip-address"}
PeerAddress = Annotated[Any, BeforeValidator(_peer_address), WithJsonSchema(_IP_SCHEMA)]
NextHop = Annotated[Any, BeforeValidator(_next_hop), WithJsonSchema(_IP_SCHEMA)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def community(text: str) -> tuple[int, ...]:
    """ "65000:100" -> (65000, 100); "65000:1:2" -> a large community. ValueError otherwise."""
    if not _COMMUNITY_RE.match(text):
        raise ValueError(f"community {text!r}: expected ASN:VALUE or ASN:VALUE1:VALUE2 (large)")
    parts = tuple(int(p) for p in text.split(":"))
    limit = 0xFFFF if len(parts) == 2 else 0xFFFFFFFF
    if any(p > limit for p in parts):
        what = "16 bits" if len(parts) == 2 else "32 bits"
        raise ValueError(f"community {text!r}: each part of a {len(parts)}-part community fits in {what}")
    return parts


class VipPolicy(_Model):
    """Path attributes announced with a VIP."""

    communities: list[str] = []  # "ASN:VALUE" (standard) or "ASN:V1:V2" (large)
    med: _U32 | None = None  # MULTI_EXIT_DISC: the router prefers the lowest
    local_pref: _U32 | None = None  # LOCAL_PREF: sent on iBGP sessions only (RFC 4271 5.1.5)

    @field_validator("communities")
    @classmethod
    def _communities(cls, v: list[str]) -> list[str]:
        for c in v:
            community(c)
        return v


class BfdConfig(_Model):
    """Bidirectional Forwarding Detection on every session: a peer that stops
    answering is down after interval_ms x multiplier."""

    enabled: bool = True
    interval_ms: Annotated[int, Field(ge=10, le=10_000)] = 100  # min tx and rx interval
    multiplier: Annotated[int, Field(ge=1, le=255)] = 3


class BgpPeer(_Model):
    """One router this node peers with."""

    name: str | None = None  # BIRD protocol name; default "peer<index>"
    address: PeerAddress
    asn: Asn
    source: Annotated[Any, BeforeValidator(_next_hop), WithJsonSchema(_IP_SCHEMA)] | None = None  # local address
    multihop: Annotated[int, Field(ge=1, le=255)] | None = None  # None: the router is on a connected network
    # Frontend VLANs whose VIPs this router carries (a service's segment);
    # empty: every VIP. A tenant's router sees only its tenant's VIPs.
    segments: list[VlanId] = []
    # Where the router sends the VIP's traffic: this node's address on the
    # frontend network. None: the session's local address (IPv4 VIPs), and
    # IPv6 VIPs are then announced only over an IPv6 session.
    next_hop: NextHop | None = None
    next_hop6: NextHop | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.match(v):
            raise ValueError(f"{v!r}: a lower-case letter, then up to 15 lower-case letters, digits or '_'")
        return v

    @field_validator("next_hop")
    @classmethod
    def _v4(cls, v: IPAddress | None) -> IPAddress | None:
        if v is not None and v.version != 4:
            raise ValueError(f"{v} is not an IPv4 address (IPv6 next hops go in next_hop6)")
        return v

    @field_validator("next_hop6")
    @classmethod
    def _v6(cls, v: IPAddress | None) -> IPAddress | None:
        if v is not None and v.version != 6:
            raise ValueError(f"{v} is not an IPv6 address")
        return v

    def carries(self, family: int) -> bool:
        """Whether IPv4 (4) or IPv6 (6) VIPs can be announced to this peer."""
        if family == 4:
            return self.next_hop is not None or self.address.version == 4
        return self.next_hop6 is not None or self.address.version == 6


class BgpConfig(_Model):
    """`xdsr agent --bgp-config FILE` (YAML or JSON)."""

    asn: Asn  # this node's AS
    router_id: Annotated[Any, BeforeValidator(_next_hop), WithJsonSchema(_IP_SCHEMA)] | None = None
    # Seconds without a message before a session is declared down (BGP
    # allows 0 = never, or at least 3); keepalives go every third of it.
    hold_time: Annotated[int, Field(ge=0, le=65535)] = 9
    bfd: BfdConfig = BfdConfig()
    peers: Annotated[list[BgpPeer], Field(min_length=1)]
    default_policy: VipPolicy = VipPolicy()
    vips: dict[VipAddress, VipPolicy] = {}  # per-VIP attributes, instead of default_policy
    check_interval: Annotated[float, Field(ge=0.05, le=10)] = 0.2  # seconds between checks of XDP and sessions
    bird: str = "bird"  # the BIRD 2 binary

    @field_validator("hold_time")
    @classmethod
    def _hold(cls, v: int) -> int:
        if 0 < v < 3:
            raise ValueError(f"{v}: the hold time is 0 (no keepalives) or at least 3 seconds (RFC 4271 4.2)")
        return v

    @field_validator("router_id")
    @classmethod
    def _router_id(cls, v: IPAddress | None) -> IPAddress | None:
        if v is not None and v.version != 4:
            raise ValueError(f"{v}: a router id is written as an IPv4 address")
        return v

    @model_validator(mode="after")
    def _peers(self) -> BgpConfig:
        names = self.peer_names()
        if len(set(names)) != len(names):
            raise ValueError(f"peers: names must be unique, got {names}")
        addrs = [str(p.address) for p in self.peers]
        if len(set(addrs)) != len(addrs):
            raise ValueError(f"peers: addresses must be unique, got {addrs}")
        for name, p in zip(names, self.peers, strict=True):
            # BIRD runs iBGP sessions multihop, and multihop BFD needs a fixed source.
            if self.bfd.enabled and (p.multihop is not None or p.asn == self.asn) and p.source is None:
                raise ValueError(f"peers: {name} is multihop (or iBGP) with BFD: give its `source` address")
        if self.router_id is None and not any(p.address.version == 4 for p in self.peers):
            raise ValueError("router_id: required when no peer is reached over IPv4")
        return self

    def peer_names(self) -> list[str]:
        return [p.name or f"peer{i}" for i, p in enumerate(self.peers)]

    def policy(self, vip: IPAddress) -> VipPolicy:
        return self.vips.get(vip, self.default_policy)


# -- what the agent reports ----------------------------------------------------

BgpState = Literal["announcing", "withdrawn", "drained", "stopped"]


class BgpPeerStatus(_Model):
    name: str
    address: str
    asn: int
    state: str  # BIRD's BGP state: Established, Active, Connect, Idle...
    up: bool  # the session is established
    since: str | None = None  # when it last changed state (BIRD's clock)
    error: str | None = None  # why it is not established, when BIRD says
    bfd: bool = False  # BFD protects the session
    announced: list[str] = []  # prefixes this node gives this peer
    exported: int | None = None  # routes BIRD reports exported to the peer


class BgpStatus(_Model):
    enabled: bool  # --bgp-config given
    state: BgpState | None = None  # announcing: every VIP the data plane holds; else nothing
    reason: str | None = None  # why nothing is announced (drained, XDP program detached, ...)
    drained: bool = False
    announced: list[str] = []  # every prefix announced to at least one peer
    peers: list[BgpPeerStatus] = []


def normalize_prefix(addr: IPAddress) -> str:
    return f"{addr}/{32 if addr.version == 4 else 128}"


# -- the one-line summary in the node's registration record --------------------
# (model.group.LbnRecord.bgp): the agent writes it, the operator and the API
# server read it. "announcing", "drained", "withdrawn: <why>", "stopped", each
# followed by "; sessions down: <peer>, <peer>" when some are.

_DOWN = "; sessions down: "


class BgpSummary(_Model):
    """A node's BGP state as its registration record says it."""

    state: str  # announcing, drained, withdrawn, stopped
    reason: str | None = None  # why it withdrew
    sessions_down: list[str] = []  # peers whose session is not established

    @computed_field  # type: ignore[prop-decorator]
    @property
    def announcing(self) -> bool:
        """The node announces every VIP its data plane holds, to every router."""
        return self.state == "announcing" and not self.sessions_down


def summarize(status: BgpStatus) -> str:
    out = f"withdrawn: {status.reason}" if status.state == "withdrawn" else str(status.state)
    down = [p.name for p in status.peers if not p.up]
    return out + (f"{_DOWN}{', '.join(down)}" if down else "")


def parse_summary(text: str) -> BgpSummary:
    head, _, down = text.partition(_DOWN)
    state, _, reason = head.partition(": ")
    return BgpSummary(
        state=state.strip(),
        reason=reason.strip() or None,
        sessions_down=[p.strip() for p in down.split(",") if p.strip()],
    )
