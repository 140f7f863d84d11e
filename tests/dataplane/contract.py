"""A reference model of the data plane's contract (docs/dataplane.md), in
plain Python over raw bytes: for a frame and the installed services, the
verdict, the counters it bumps, and every byte of the frame it sends.

Written from the documentation, not from the C: the fuzzer
(test_fuzz.py) compares it with the program through BPF_PROG_TEST_RUN, so
the two can only agree if the program does what the contract says. The
Maglev tables and the flow hash come from the Python mirrors
(xdsr.dataplane.tables, xdsr.dataplane.flowhash), which test_packets.py
checks against the kernel on their own.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from xdsr.dataplane.abi import Reason, SegType
from xdsr.dataplane.flowhash import DEFAULT_HASH_SEED, flow_hash, slot_of
from xdsr.dataplane.model import Backend, Service, TunnelEndpoint
from xdsr.dataplane.tables import maglev_slots
from xdsr.net.frames import mac_bytes

TCP, UDP, ICMP, ICMPV6 = socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6
HOP, ROUTING, FRAGMENT, AUTH, DEST = 0, 43, 44, 51, 60
IPV6_EXT = {HOP, ROUTING, FRAGMENT, AUTH, DEST}
MAX_IPV6_EXT = 4  # headers walked before the chain counts as unsupported
VERDICTS = {"tx": 3, "pass": 2, "drop": 1}  # XDP_TX, XDP_PASS, XDP_DROP


@dataclass
class Outcome:
    verdict: str  # "tx", "pass" or "drop"
    reason: Reason
    details: set[Reason] = field(default_factory=set)
    frame: bytes | None = None  # what XDP_TX sends
    service: Service | None = None

    @property
    def counted(self) -> set[Reason]:
        return {self.reason, *self.details}


class _Verdict(Exception):
    def __init__(self, verdict: str, reason: Reason) -> None:
        self.outcome = Outcome(verdict, reason)


def _malformed() -> _Verdict:
    return _Verdict("drop", Reason.MALFORMED)


@dataclass
class _Flow:
    """What a parsed packet is looked up and hashed by."""

    family: int
    dst: bytes  # the key's address
    port: int
    proto: int
    src_h: bytes  # the flow hash's source and destination
    dst_h: bytes
    sport_h: int = 0
    dport_h: int = 0
    fragment: bool = False
    icmp: bool = False
    l3_len: int = 0  # IP header and extension headers walked
    l4_len: int = 0  # what the IP header says follows them


# A segment as the key holds it: (type, id).
_Seg = tuple[int, int]

# Overlays (docs/dataplane.md, Overlays).

VXLAN_I, GENEVE_O, GENEVE_C, TEB = 0x08, 0x80, 0x40, 0x6558


@dataclass
class _Tunnel:
    flow: _Flow  # the inner packet's
    seg: _Seg
    outer_l3: int  # offsets in the frame
    udp_at: int
    tun_at: int
    inner_at: int
    family: int  # the underlay's
    critical: bool


def _csum_update(check: int, old: bytes, new: bytes) -> int:
    """RFC 1624: HC' = ~(~HC + ~m + m') over the 16-bit words that changed."""
    s = ~check & 0xFFFF
    for i in range(0, len(old), 2):
        s += (~struct.unpack_from("!H", old, i)[0] & 0xFFFF) + struct.unpack_from("!H", new, i)[0]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Contract:
    def __init__(
        self,
        services: list[Service],
        lbn_mac: str,
        seed: int = DEFAULT_HASH_SEED,
        tunnel: TunnelEndpoint | None = None,
    ) -> None:
        self.mac = mac_bytes(lbn_mac)
        self.seed = seed
        self.tunnel = tunnel or TunnelEndpoint()
        self.services: dict[tuple[int, bytes, int, int, _Seg], Service] = {}
        groups: dict[tuple[int, bytes, int, _Seg], list[Service]] = defaultdict(list)
        for s in services:
            k = s.key
            addr = k.vip.packed
            seg = (int(k.seg_type), k.seg_id)
            self.services[(k.vip.version, addr, k.port, k.proto, seg)] = s
            groups[(k.vip.version, addr, k.proto, seg)].append(s)
        # Every fragment of (VIP, protocol, segment) goes to the service of
        # that VIP with the lowest port.
        for (fam, addr, proto, seg), members in groups.items():
            self.services[(fam, addr, 0, proto, seg)] = min(members, key=lambda s: s.key.port)
        self._tables: dict[int, np.ndarray] = {}

    def _table(self, svc: Service) -> np.ndarray:
        if id(svc) not in self._tables:
            self._tables[id(svc)] = maglev_slots(svc.table_size, svc.backends)
        return self._tables[id(svc)]

    # -- the whole path ------------------------------------------------------

    def run(self, frame: bytes) -> Outcome:
        try:
            return self._run(frame)
        except _Verdict as v:
            return v.outcome

    def _run(self, frame: bytes) -> Outcome:
        if len(frame) < 14:
            raise _malformed()
        if frame[0:6] != self.mac:
            raise _Verdict("pass", Reason.NOT_FOR_US)
        etype = struct.unpack_from("!H", frame, 12)[0]
        tagged, tci, l3 = False, 0, 14
        if etype == 0x8100:
            if len(frame) < 18:
                raise _malformed()
            tagged = True
            tci, etype = struct.unpack_from("!HH", frame, 14)
            l3 = 18
        vid = tci & 0x0FFF
        if etype == 0x0800:
            flow = self._ipv4(frame[l3:])
        elif etype == 0x86DD:
            flow = self._ipv6(frame[l3:])
        else:
            raise _Verdict("pass", Reason.NOT_IP)
        seg: _Seg = (int(SegType.VLAN), vid)
        tunnel = None
        if flow.proto == UDP and not flow.icmp and not flow.fragment and self._to_our_endpoint(flow):
            tunnel = self._overlay(frame, l3, flow)
            flow, seg, vid = tunnel.flow, tunnel.seg, 0

        svc = self.services.get((flow.family, flow.dst, flow.port, flow.proto, seg))
        if svc is None:
            raise _Verdict("pass", Reason.NO_SERVICE)
        if tunnel is not None and tunnel.critical:
            raise _Verdict("drop", Reason.UNSUPPORTED)
        table = self._table(svc)
        fam = ipaddress.IPv4Address if flow.family == 4 else ipaddress.IPv6Address
        h = flow_hash(
            str(fam(flow.src_h)),
            str(fam(flow.dst_h)),
            flow.proto,
            flow.sport_h,
            flow.dport_h,
            vid,
            fragment=flow.fragment,
            seed=self.seed,
        )
        if len(table) == 0:
            raise _Verdict("drop", Reason.NO_BACKEND)
        b = int(table[slot_of(h, svc.table_size)])
        if b >= len(svc.backends):
            raise _Verdict("drop", Reason.NO_BACKEND)
        be = svc.backends[b]
        if tunnel is not None:
            out, details = self._reencapsulate(frame, tunnel, be)
        else:
            out, details = self._rewrite(frame, tagged, tci, be)
        if flow.fragment:
            details.add(Reason.FRAGMENT)
        if flow.icmp:
            details.add(Reason.ICMP_ERROR)
        return Outcome("tx", Reason.FORWARDED, details, out, svc)

    def _rewrite(self, frame: bytes, tagged: bool, tci: int, be: Backend) -> tuple[bytes, set[Reason]]:
        macs = mac_bytes(be.mac) + self.mac
        if tagged and be.vlan:
            return macs + frame[12:14] + struct.pack("!H", (tci & 0xF000) | be.vlan) + frame[16:], set()
        if tagged:
            return macs + frame[16:], {Reason.VLAN_POP}
        if be.vlan:
            return macs + struct.pack("!HH", 0x8100, be.vlan) + frame[12:], {Reason.VLAN_PUSH}
        return macs + frame[12:], set()

    # -- overlays (docs/dataplane.md, Overlays) ---------------------------------

    def _to_our_endpoint(self, flow: _Flow) -> bool:
        t = self.tunnel
        if not t.enabled or not flow.port or flow.port not in (t.vxlan_port, t.geneve_port):
            return False
        ours = t.vtep4 if flow.family == 4 else t.vtep6
        return ours is not None and ours.packed == flow.dst

    def _overlay(self, frame: bytes, l3: int, outer: _Flow) -> _Tunnel:
        udp_at = l3 + outer.l3_len
        ulen = struct.unpack_from("!H", frame, udp_at + 4)[0]  # checked by _l4
        payload = frame[udp_at + 8 : udp_at + ulen]
        if len(payload) < 8:
            raise _malformed()
        if outer.port == self.tunnel.vxlan_port:
            if not payload[0] & VXLAN_I:
                raise _malformed()
            seg_type, tlen, critical = SegType.VXLAN, 8, False
        else:
            if payload[0] >> 6:
                raise _Verdict("drop", Reason.UNSUPPORTED)
            if payload[1] & GENEVE_O or struct.unpack_from("!H", payload, 2)[0] != TEB:
                raise _Verdict("pass", Reason.NO_SERVICE)
            tlen = 8 + (payload[0] & 0x3F) * 4
            if len(payload) < tlen:
                raise _malformed()
            seg_type, critical = SegType.GENEVE, bool(payload[1] & GENEVE_C)
        vni = int.from_bytes(payload[4:7], "big")
        inner = payload[tlen:]
        if len(inner) < 14:
            raise _malformed()
        etype = struct.unpack_from("!H", inner, 12)[0]
        # The outer datagram bounds the inner one: its lengths are checked
        # against what the UDP payload holds, not the frame.
        if etype == 0x0800:
            flow = self._ipv4(inner[14:])
        elif etype == 0x86DD:
            flow = self._ipv6(inner[14:])
        else:
            raise _Verdict("pass", Reason.NOT_IP)
        tun_at = udp_at + 8
        return _Tunnel(flow, (int(seg_type), vni), l3, udp_at, tun_at, tun_at + tlen, outer.family, critical)

    def _reencapsulate(self, frame: bytes, t: _Tunnel, be: Backend) -> tuple[bytes, set[Reason]]:
        if be.vtep is None or be.vtep.version != t.family:
            raise _Verdict("drop", Reason.TX_ERROR)
        out = bytearray(frame)
        ours = self.tunnel.vtep4 if t.family == 4 else self.tunnel.vtep6
        assert ours is not None
        src_at = t.outer_l3 + (12 if t.family == 4 else 8)
        alen = 4 if t.family == 4 else 16
        old_addrs = bytes(out[src_at : src_at + 2 * alen])
        out[src_at : src_at + 2 * alen] = ours.packed + be.vtep.packed
        if t.family == 4:
            check = struct.unpack_from("!H", out, t.outer_l3 + 10)[0]
            struct.pack_into(
                "!H", out, t.outer_l3 + 10, _csum_update(check, old_addrs, bytes(out[src_at : src_at + 8]))
            )
        old_vni = bytes(out[t.tun_at + 4 : t.tun_at + 8])
        out[t.tun_at + 4 : t.tun_at + 7] = be.vni.to_bytes(3, "big")
        old_macs = bytes(out[t.inner_at : t.inner_at + 12])
        out[t.inner_at : t.inner_at + 12] = mac_bytes(be.mac) + self.mac
        check = struct.unpack_from("!H", out, t.udp_at + 6)[0]
        if check:
            old = old_addrs + old_vni + old_macs
            new = bytes(out[src_at : src_at + 2 * alen]) + bytes(out[t.tun_at + 4 : t.tun_at + 8])
            new += bytes(out[t.inner_at : t.inner_at + 12])
            check = _csum_update(check, old, new) or 0xFFFF
            struct.pack_into("!H", out, t.udp_at + 6, check)
        out[0:12] = mac_bytes(be.hop_mac) + self.mac
        return bytes(out), set()  # no detail: the service's counter counts it

    # -- IPv4 ----------------------------------------------------------------

    def _ipv4(self, p: bytes) -> _Flow:
        if len(p) < 20:
            raise _malformed()
        if p[0] >> 4 != 4 or p[0] & 0xF < 5:
            raise _malformed()
        hdr = (p[0] & 0xF) * 4
        tot_len = struct.unpack_from("!H", p, 2)[0]
        if hdr > len(p) or tot_len < hdr or tot_len > len(p):
            raise _malformed()
        frag_off = struct.unpack_from("!H", p, 6)[0]
        proto, src, dst = p[9], p[12:16], p[16:20]
        fragment = frag_off & 0x3FFF != 0
        l4 = p[hdr:tot_len]  # what the IP header says follows: never the padding
        if proto == ICMP and not fragment:
            steered = self._icmp4(l4, dst)
            if steered is not None:
                return steered
        flow = _Flow(4, dst, 0, proto, src, dst, fragment=fragment, l3_len=hdr, l4_len=tot_len - hdr)
        return self._l4(flow, l4)

    def _icmp4(self, l4: bytes, outer_dst: bytes) -> _Flow | None:
        """An ICMP "fragmentation needed" about a packet the VIP sent."""
        if len(l4) < 8 + 20 + 8 or l4[0] != 3 or l4[1] != 4:
            return None
        q = l4[8:]
        if q[0] >> 4 != 4 or q[0] & 0xF < 5 or q[12:16] != outer_dst:
            return None
        if struct.unpack_from("!H", q, 6)[0] & 0x1FFF:
            return None  # a later fragment: no ports quoted
        hdr = (q[0] & 0xF) * 4
        if len(q) < hdr + 8:
            return None
        return self._steer(4, q[9], q[12:16], q[16:20], q[hdr : hdr + 4])

    # -- IPv6 ----------------------------------------------------------------

    def _ipv6(self, p: bytes) -> _Flow:
        if len(p) < 40 or p[0] >> 4 != 6:
            raise _malformed()
        plen = struct.unpack_from("!H", p, 4)[0]
        if 40 + plen > len(p):
            raise _malformed()
        payload = p[40 : 40 + plen]
        nh, src, dst = p[6], p[8:24], p[24:40]
        pos, fragment = 0, False
        for _ in range(MAX_IPV6_EXT):
            if nh not in IPV6_EXT:
                break
            if nh == FRAGMENT:
                if pos + 8 > plen:
                    raise _malformed()
                frag_off = struct.unpack_from("!H", payload, pos + 2)[0]
                nh = payload[pos]
                pos += 8
                if frag_off & 0xFFF9:  # not an atomic fragment
                    # The fragmentable part starts here: its first header
                    # is every fragment's protocol.
                    fragment = True
                    break
            else:
                if pos + 2 > plen:
                    raise _malformed()
                ext_len = (payload[pos + 1] + 2) * 4 if nh == AUTH else (payload[pos + 1] + 1) * 8
                if pos + ext_len > plen:
                    raise _malformed()
                nh = payload[pos]
                pos += ext_len
        if not fragment and nh in IPV6_EXT:
            raise _Verdict("drop", Reason.UNSUPPORTED)
        l4 = payload[pos:]
        if nh == ICMPV6 and not fragment:
            steered = self._icmp6(l4, dst)
            if steered is not None:
                return steered
        flow = _Flow(6, dst, 0, nh, src, dst, fragment=fragment, l3_len=40 + pos, l4_len=plen - pos)
        return self._l4(flow, l4)

    def _icmp6(self, l4: bytes, outer_dst: bytes) -> _Flow | None:
        """An ICMPv6 "packet too big" about a packet the VIP sent."""
        if len(l4) < 8 + 40 + 8 or l4[0] != 2:
            return None
        q = l4[8:]
        if q[0] >> 4 != 6 or q[8:24] != outer_dst:
            return None
        return self._steer(6, q[6], q[8:24], q[24:40], q[40:44])

    # -- both ----------------------------------------------------------------

    @staticmethod
    def _steer(family: int, proto: int, vip: bytes, client: bytes, ports: bytes) -> _Flow | None:
        """The quoted reply VIP:port -> client:cport, looked up by its source
        and hashed as the client's packets of that flow are."""
        if proto not in (TCP, UDP):
            return None
        port, cport = struct.unpack("!HH", ports)
        if not port or not cport:
            return None
        return _Flow(family, vip, port, proto, client, vip, cport, port, icmp=True)

    @staticmethod
    def _l4(flow: _Flow, l4: bytes) -> _Flow:
        if flow.fragment or flow.proto not in (TCP, UDP):
            return flow
        if flow.proto == TCP:
            if len(l4) < 20 or l4[12] >> 4 < 5 or (l4[12] >> 4) * 4 > len(l4):
                raise _malformed()
        else:
            if len(l4) < 8:
                raise _malformed()
            ulen = struct.unpack_from("!H", l4, 4)[0]
            if ulen < 8 or ulen > len(l4):
                raise _malformed()
        sport, dport = struct.unpack_from("!HH", l4)
        if dport == 0:
            raise _Verdict("pass", Reason.NO_SERVICE)  # port 0 is no service's
        flow.port, flow.sport_h, flow.dport_h = dport, sport, dport
        return flow
