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

from xdsr.dataplane.abi import Reason
from xdsr.dataplane.flowhash import DEFAULT_HASH_SEED, flow_hash, slot_of
from xdsr.dataplane.model import Backend, Service
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


class Contract:
    def __init__(self, services: list[Service], lbn_mac: str, seed: int = DEFAULT_HASH_SEED) -> None:
        self.mac = mac_bytes(lbn_mac)
        self.seed = seed
        self.services: dict[tuple[int, bytes, int, int, int], Service] = {}
        groups: dict[tuple[int, bytes, int, int], list[Service]] = defaultdict(list)
        for s in services:
            k = s.key
            addr = k.vip.packed
            self.services[(k.vip.version, addr, k.port, k.proto, k.seg_id)] = s
            groups[(k.vip.version, addr, k.proto, k.seg_id)].append(s)
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

        svc = self.services.get((flow.family, flow.dst, flow.port, flow.proto, vid))
        if svc is None:
            raise _Verdict("pass", Reason.NO_SERVICE)
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
        flow = _Flow(4, dst, 0, proto, src, dst, fragment=fragment)
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
        return self._l4(_Flow(6, dst, 0, nh, src, dst, fragment=fragment), l4)

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
