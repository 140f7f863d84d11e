"""The data plane's view of services: plain dataclasses, no I/O.

A Service is what one entry of the first lookup holds: its key (VIP,
destination port, protocol, segment), its table size and its backends. A
TunnelEndpoint is what an attachment knows of its own VXLAN/Geneve
endpoint.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import ipaddress
import json
import socket
from dataclasses import dataclass, field

from xdsr.dataplane import abi
from xdsr.model import checks
from xdsr.model.checks import MAX_TABLE_SIZE as MAX_TABLE_SIZE  # the checks live there
from xdsr.model.checks import normalize_mac as normalize_mac

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_Addr = dict(abi.SvcKey._fields_)["addr"]  # the mirror's u8[16]
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}


@dataclass(frozen=True)
class ServiceKey:
    vip: IPAddress
    port: int
    proto: int
    seg_type: abi.SegType = abi.SegType.VLAN
    seg_id: int = 0

    def __hash__(self) -> int:
        # Cached: an apply of thousands of services looks each key up in
        # several dicts, and hashing the address each time dominated it.
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.vip, self.port, self.proto, self.seg_type, self.seg_id))

    @functools.cached_property
    def _order(self) -> tuple[int, int, int, int, int, int]:
        # Cached: sorting a thousand keys compares each many times.
        return (self.vip.version, int(self.vip), self.port, self.proto, self.seg_type, self.seg_id)

    def __lt__(self, other: ServiceKey) -> bool:
        return self._order < other._order

    def to_abi(self) -> abi.SvcKey:
        """The key as the kernel's struct xdsr_svc_key (through the mirror
        test_abi.py checks against BTF): an IPv4 VIP as IPv4-mapped IPv6
        with family IPv4 (so an IPv6 packet to ::ffff:a.b.c.d matches no
        IPv4 service), the port in network byte order, the segment's type
        and id in one word."""
        v4 = self.vip.version == 4
        return abi.SvcKey(
            addr=_Addr.from_buffer_copy(_V4_MAPPED + self.vip.packed if v4 else self.vip.packed),
            port=socket.htons(self.port),
            proto=self.proto,
            family=abi.Family.IPV4 if v4 else abi.Family.IPV6,
            segment=self.seg_type << abi.SEG_TYPE_SHIFT | self.seg_id,
        )

    @functools.cached_property
    def _packed(self) -> bytes:
        # Cached: an apply packs each key several times (entry, index, digest).
        return bytes(self.to_abi())

    def pack(self) -> bytes:
        return self._packed

    @classmethod
    def from_abi(cls, key: abi.SvcKey) -> ServiceKey:
        addr = bytes(key.addr)
        vip: IPAddress
        if abi.Family(key.family) == abi.Family.IPV4:
            vip = ipaddress.IPv4Address(addr[12:])
        else:
            vip = ipaddress.IPv6Address(addr)
        seg_type = abi.SegType(key.segment >> abi.SEG_TYPE_SHIFT)
        seg_id = key.segment & ((1 << abi.SEG_TYPE_SHIFT) - 1)
        return cls(vip, socket.ntohs(key.port), key.proto, seg_type, seg_id)

    @classmethod
    def unpack(cls, raw: bytes) -> ServiceKey:
        return cls.from_abi(abi.SvcKey.from_buffer_copy(raw))

    @property
    def overlay(self) -> bool:
        """Keyed by a VXLAN or Geneve VNI: its backends sit behind tunnels."""
        return self.seg_type != abi.SegType.VLAN

    def fragment_key(self) -> ServiceKey:
        """The port-0 key under which every fragment of (VIP, proto, segment) is looked up."""
        return ServiceKey(self.vip, 0, self.proto, self.seg_type, self.seg_id)

    @property
    def protocol(self) -> str:
        return PROTOCOL_NAMES.get(self.proto, str(self.proto))

    def __str__(self) -> str:
        vip = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        seg = self.seg_type.name.lower()
        return f"{vip}:{self.port}/{self.protocol} {seg} {self.seg_id}"


@dataclass(frozen=True)
class Backend:
    mac: str  # normalized, lower case; behind a tunnel: the inner destination MAC
    vlan: int  # 0 = untagged (always 0 behind a tunnel)
    weight: int = 1
    id: str = ""  # Maglev identity; defaults to "mac@vlan" ("mac@vniN" behind a tunnel)
    # Behind a tunnel (a service on a VXLAN or Geneve segment): the VNI the
    # frames go out on, the backend's tunnel endpoint, and the MAC of the
    # underlay next hop towards that endpoint (the outer destination MAC).
    vni: int = 0
    vtep: IPAddress | None = None
    hop_mac: str = ""

    @property
    def identity(self) -> str:
        if self.id:
            return self.id
        return f"{self.mac}@vni{self.vni}" if self.vni else f"{self.mac}@{self.vlan}"

    @property
    def tunnel(self) -> bool:
        return self.vni != 0

    def digest_fields(self) -> list[object]:
        """What of the backend shapes its table entry (digests of services and tables)."""
        out: list[object] = [self.identity, self.mac, self.vlan, self.weight]
        if self.tunnel:
            out += [self.vni, str(self.vtep), self.hop_mac]
        return out


# The default ports of RFC 7348 and RFC 8926.
VXLAN_PORT = 4789
GENEVE_PORT = 6081


@dataclass(frozen=True)
class TunnelEndpoint:
    """This node's VXLAN/Geneve endpoint on an attachment: frames to it on
    these ports are parsed as overlay frames, and it is the outer source of
    what the program sends to backends behind tunnels. Without an address
    (the default) the program parses no overlay frame."""

    vtep4: ipaddress.IPv4Address | None = None
    vtep6: ipaddress.IPv6Address | None = None
    vxlan_port: int = VXLAN_PORT  # 0: off
    geneve_port: int = GENEVE_PORT  # 0: off

    @property
    def enabled(self) -> bool:
        return self.vtep4 is not None or self.vtep6 is not None

    def fill(self, cfg: abi.ProgCfg) -> None:
        """Write this endpoint into the program's per-attachment constants."""
        families = abi.VtepFamilies(0)
        if self.vtep4 is not None:
            ctypes.memmove(cfg.vtep4, _V4_MAPPED + self.vtep4.packed, 16)
            families |= abi.VtepFamilies.IPV4
        if self.vtep6 is not None:
            ctypes.memmove(cfg.vtep6, self.vtep6.packed, 16)
            families |= abi.VtepFamilies.IPV6
        cfg.vtep_families = int(families)
        cfg.vxlan_port = socket.htons(self.vxlan_port) if families else 0
        cfg.geneve_port = socket.htons(self.geneve_port) if families else 0


@dataclass(frozen=True)
class Service:
    key: ServiceKey
    table_size: int
    backends: tuple[Backend, ...] = field(default_factory=tuple)

    def digest(self) -> int:
        """64-bit digest of everything that shapes the table; stored in the
        table header so that an apply rewrites only services that changed."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> int:
        # Cached: every apply compares every service's digest, and a node
        # holding thousands of services applies one changed service at a time.
        doc = {
            "abi": abi.ABI_VERSION,
            "key": self.key.pack().hex(),
            "m": self.table_size,
            "b": [b.digest_fields() for b in self.backends],
        }
        h = hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(), digest_size=8)
        return int.from_bytes(h.digest(), "little")

    @property
    def active_backends(self) -> int:
        return sum(1 for b in self.backends if b.weight > 0)


def tunnel_endpoint(
    addresses: list[str], vxlan_port: int = VXLAN_PORT, geneve_port: int = GENEVE_PORT
) -> TunnelEndpoint:
    """A node's endpoint from its addresses (at most one per family) and
    ports; ValueError saying what is wrong."""
    v4: ipaddress.IPv4Address | None = None
    v6: ipaddress.IPv6Address | None = None
    for a in addresses:
        ip = checks.unicast_address(a, "a tunnel endpoint")
        if isinstance(ip, ipaddress.IPv4Address):
            if v4 is not None:
                raise ValueError(f"two IPv4 tunnel endpoints: {v4} and {ip}")
            v4 = ip
        else:
            if v6 is not None:
                raise ValueError(f"two IPv6 tunnel endpoints: {v6} and {ip}")
            v6 = ip
    for what, port in (("VXLAN", vxlan_port), ("Geneve", geneve_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{what} port {port} is outside 0-65535")
    if vxlan_port and vxlan_port == geneve_port:
        raise ValueError(f"VXLAN and Geneve cannot share UDP port {vxlan_port}")
    return TunnelEndpoint(v4, v6, vxlan_port, geneve_port)
