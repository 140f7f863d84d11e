"""The generator's frames: templates, checksum partial sums, frame sizes.

How sizes are counted. RFC 2544 frame sizes (64 … 1518) are whole Ethernet
frames *including the 4-byte FCS*, and here including the 802.1Q tag when the
frame carries one. A veth carries no FCS, so a frame of size S is S - 4
bytes on the veth: a 64-byte tagged UDP frame is 14 + 4 + 20 + 8 + 14 bytes
of zero payload = 60 bytes in memory. The receiver counts each frame as its
veth length + 4, and at least 64 (a NIC would pad a shorter one), so the L2
rate is what a wire would carry, and L1 adds 20 bytes per frame (preamble,
start delimiter, inter-frame gap).

IMIX sizes are IP packet sizes (40, 576, 1500 bytes, 7:4:1); the frame adds
the Ethernet header, the tag if any, and the FCS: 62 (padded to 64), 598 and
1522 bytes tagged, 58 (→ 64), 594 and 1518 untagged.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from dataclasses import dataclass

from xdsr.bench.rfc2544.programs import GEN_HDR_MAX, GEN_MAX_VIPS, GenCfg
from xdsr.net.frames import (
    ETH_HLEN,
    ETH_P_8021Q,
    ETH_P_IP,
    VLAN_HLEN,
    checksum,
    ethernet,
    mac_bytes,
    pseudo_header,
)

RFC2544_SIZES = (64, 128, 256, 512, 1024, 1280, 1510)
IMIX_IP_SIZES = (40, 576, 1500)  # small, medium, large
IMIX_WEIGHTS = (7, 4, 1)  # 58.333 %, 33.333 %, 8.333 %
FCS = 4
L1_OVERHEAD = 20  # preamble 7 + SFD 1 + inter-frame gap 12
MIN_WIRE_FRAME = 64

IPV4_HLEN = 20
L4_HLEN = {"udp": 8, "tcp": 20}
PROTO_NUMBERS = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP}

DST_PORT = 9  # the scenarios' service port (discard)
TCP_SYN = 0x02
TTL = 64

# Flows: every frame gets a source address from 10.0.0.0/8 (24 random bits)
# and a source port in 1024..65535, so practically every frame is a new flow.
SADDR_BASE = "10.0.0.0"
SADDR_MASK = 0x00FF_FFFF
SPORT_MIN = 1024
SPORT_SPAN = 65536 - 1024


VXLAN_PORT = 4789
VXLAN_UDP_HLEN = 8 + 8  # UDP and VXLAN headers
VXLAN_OUTER = ETH_HLEN + IPV4_HLEN + VXLAN_UDP_HLEN  # before the inner frame (bench.h GEN_VXLAN_OUTER)


@dataclass(frozen=True)
class Vxlan:
    """Frames in VXLAN: from the tester's endpoint src to the DUT's dst, VNI
    vni, inner frames to inner_dst_mac (the VIP's MAC on the tenant network)."""

    src: str
    dst: str
    vni: int
    inner_dst_mac: str


def imix_mean_wire_size(tagged: bool) -> float:
    """Mean frame size on a wire (FCS included, padded to 64) of the IMIX mix."""
    l2 = ETH_HLEN + (VLAN_HLEN if tagged else 0) + FCS
    sizes = [max(ip + l2, MIN_WIRE_FRAME) for ip in IMIX_IP_SIZES]
    return sum(s * w for s, w in zip(sizes, IMIX_WEIGHTS, strict=True)) / sum(IMIX_WEIGHTS)


def le_words_sum(data: bytes) -> int:
    """Unfolded sum of the 16-bit words of data, loaded little-endian as the
    BPF program loads them (data of odd length is padded with a zero)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"<{len(data) // 2}H", data))


@dataclass(frozen=True)
class Template:
    """One frame for BPF_PROG_TEST_RUN's data_in, and the generator's config."""

    frame: bytes
    cfg: GenCfg
    tagged: bool
    proto: str
    ip_len: int  # of the frame given (the largest, with IMIX); the inner frame's with VXLAN
    vxlan: bool = False

    @property
    def key(self) -> bytes:
        """Identifies the stream (frame and generator configuration)."""
        return self.frame + bytes(self.cfg)

    @property
    def hdr_len(self) -> int:
        outer = VXLAN_OUTER if self.vxlan else 0
        return outer + ETH_HLEN + (VLAN_HLEN if self.tagged else 0) + IPV4_HLEN + L4_HLEN[self.proto]


def ip_len_for(size: int, tagged: bool) -> int:
    """IP packet length of an RFC 2544 frame of `size` bytes (FCS included)."""
    return size - FCS - ETH_HLEN - (VLAN_HLEN if tagged else 0)


def build_template(
    *,
    dst_mac: str,
    src_mac: str,
    vid: int | None,
    proto: str,
    vips: list[str],
    size: int | None = None,
    imix: bool = False,
    seed: int = 1,
    flows: int = 0,
    vxlan: Vxlan | None = None,
) -> Template:
    """The template frame and generator config for one stream.

    `size` is the RFC 2544 frame size (FCS included); with `imix` the frame
    holds the largest IMIX packet and the generator trims it per packet.
    `flows` = 0 makes every frame a new flow (source address and port drawn
    afresh); a power of two 2^k repeats the same 2^k flows over and over.
    With `vxlan` the frame of `size` (or the IMIX packet) is the inner one,
    sent in VXLAN over untagged IPv4 to the DUT's tunnel endpoint: 50 bytes
    more on the wire.
    """
    if flows and (flows < 2 or flows & (flows - 1)):
        raise ValueError(f"flows {flows}: 0 (a new flow every frame) or a power of two >= 2")
    if proto not in PROTO_NUMBERS:
        raise ValueError(f"protocol {proto!r}: udp or tcp")
    if not 1 <= len(vips) <= GEN_MAX_VIPS:
        raise ValueError(f"{len(vips)} VIPs: the generator takes 1..{GEN_MAX_VIPS}")
    tagged = vid is not None
    if imix:
        ip_len = max(IMIX_IP_SIZES)
    else:
        if size is None:
            raise ValueError("a frame size or imix")
        ip_len = ip_len_for(size, tagged)
    min_ip = IPV4_HLEN + L4_HLEN[proto]
    if ip_len < min_ip or (imix and min(IMIX_IP_SIZES) < min_ip):
        raise ValueError(f"{size}-byte frames cannot hold a {proto.upper()} header")
    proto_nr = PROTO_NUMBERS[proto]
    saddr = ipaddress.IPv4Address(SADDR_BASE).packed
    daddr = ipaddress.IPv4Address(vips[0]).packed

    eth = ethernet(mac_bytes(dst_mac), mac_bytes(src_mac), ETH_P_IP, vid)
    outer = b""
    if vxlan is not None:
        if tagged:
            raise ValueError("VXLAN frames are sent over an untagged underlay")
        outer, eth = eth, ethernet(mac_bytes(vxlan.inner_dst_mac), mac_bytes(src_mac), ETH_P_IP, None)

    l4_len = ip_len - IPV4_HLEN
    if proto == "udp":
        l4 = struct.pack("!HHHH", SPORT_MIN, DST_PORT, l4_len, 0)
    else:
        # A SYN, as in the paper: every packet opens a connection.
        l4 = struct.pack("!HHIIBBHHH", SPORT_MIN, DST_PORT, 1, 0, 5 << 4, TCP_SYN, 64240, 0, 0)
    payload = bytes(l4_len - len(l4))
    pseudo = pseudo_header(saddr, daddr, proto_nr, l4_len)
    l4_csum = checksum(pseudo + l4 + payload)
    if proto == "udp" and l4_csum == 0:
        l4_csum = 0xFFFF
    csum_off = 6 if proto == "udp" else 16
    l4 = l4[:csum_off] + struct.pack("!H", l4_csum) + l4[csum_off + 2 :]

    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, TTL, proto_nr, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    outer_ip_sum = 0
    if vxlan is not None:
        inner = eth + ip + l4 + payload
        oip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + VXLAN_UDP_HLEN + len(inner), 0, 0, TTL, socket.IPPROTO_UDP, 0,
            ipaddress.IPv4Address(vxlan.src).packed, ipaddress.IPv4Address(vxlan.dst).packed,
        )  # fmt: skip
        oip = oip[:10] + struct.pack("!H", checksum(oip)) + oip[12:]
        udp = struct.pack("!HHHH", 49152, VXLAN_PORT, VXLAN_UDP_HLEN + len(inner), 0)
        vx = struct.pack("!BBHI", 0x08, 0, 0, vxlan.vni << 8)
        outer = outer + oip + udp + vx
        outer_ip_sum = le_words_sum(oip[0:2] + oip[4:10] + oip[12:20])
    frame = outer + eth + ip + l4 + payload
    hdr = outer + eth + ip + l4
    assert len(hdr) <= GEN_HDR_MAX

    cfg = GenCfg()
    ctypes.memmove(cfg.hdr, hdr, len(hdr))
    for i, v in enumerate(vips):
        # The program stores what it loads: network order, read natively.
        cfg.vips[i] = int.from_bytes(ipaddress.IPv4Address(v).packed, "little")
    cfg.n_vips = len(vips)
    cfg.saddr_base = int.from_bytes(saddr, "little")
    cfg.saddr_mask = SADDR_MASK
    # Partial sums over every word the generator leaves as the template has
    # it. IPv4: all but tot_len (bytes 2-3), check (10-11), saddr and daddr
    # (12-19).
    cfg.ip_sum = le_words_sum(ip[0:2] + ip[4:10])
    # L4: the pseudo-header's zero/protocol word, then the header without
    # sport (0-1), the UDP length (4-5) and the checksum; the zero payload
    # adds nothing.
    pseudo_proto = struct.pack("!BB", 0, proto_nr)
    if proto == "udp":
        cfg.l4_sum = le_words_sum(pseudo_proto + l4[2:4])
    else:
        cfg.l4_sum = le_words_sum(pseudo_proto + l4[2:16] + l4[18:20])
    cfg.ip_len = ip_len
    for i, s in enumerate(IMIX_IP_SIZES):
        cfg.imix_len[i] = s
    cfg.sport_min = SPORT_MIN
    cfg.sport_span = SPORT_SPAN
    cfg.tagged = int(tagged)
    cfg.proto = proto_nr
    cfg.imix = int(imix)
    cfg.seed = seed
    cfg.flow_mask = flows - 1 if flows else 0
    cfg.vxlan = int(vxlan is not None)
    cfg.outer_ip_sum = outer_ip_sum
    return Template(frame=frame, cfg=cfg, tagged=tagged, proto=proto, ip_len=ip_len, vxlan=vxlan is not None)


@dataclass(frozen=True)
class ParsedFrame:
    """What a test needs to know about a generated frame."""

    dst_mac: str
    src_mac: str
    vid: int | None
    saddr: str
    daddr: str
    sport: int
    dport: int
    proto: int
    ip_len: int
    ip_checksum_ok: bool
    l4_checksum_ok: bool


def parse_frame(frame: bytes) -> ParsedFrame:
    """Decode a generated frame and verify both of its checksums."""
    off = ETH_HLEN
    vid = None
    (ethertype,) = struct.unpack("!H", frame[12:14])
    if ethertype == ETH_P_8021Q:
        tci, ethertype = struct.unpack("!HH", frame[14:18])
        vid = tci & 0x0FFF
        off += VLAN_HLEN
    if ethertype != ETH_P_IP:
        raise ValueError(f"not IPv4: EtherType {ethertype:#06x}")
    ip = frame[off : off + IPV4_HLEN]
    ip_len = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    l4 = frame[off + IPV4_HLEN : off + ip_len]
    pseudo = pseudo_header(ip[12:16], ip[16:20], proto, len(l4))
    sport, dport = struct.unpack("!HH", l4[:4])
    udp_csum_absent = proto == socket.IPPROTO_UDP and l4[6:8] == b"\0\0"
    return ParsedFrame(
        dst_mac=frame[0:6].hex(":"),
        src_mac=frame[6:12].hex(":"),
        vid=vid,
        saddr=str(ipaddress.IPv4Address(ip[12:16])),
        daddr=str(ipaddress.IPv4Address(ip[16:20])),
        sport=sport,
        dport=dport,
        proto=proto,
        ip_len=ip_len,
        ip_checksum_ok=checksum(ip) == 0,
        l4_checksum_ok=not udp_csum_absent and checksum(pseudo + l4) == 0,
    )
