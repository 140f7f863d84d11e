"""Links, addresses, routes, neighbours, offloads and sysctls inside a lab's
namespaces: the network-configuration half of Lab (netns.py), written
against its netlink() and run()."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .commands import LabError, run_cmd

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")

# Offloads every lab veth turns off by default (see add_veth).
DEFAULT_OFFLOADS_OFF = (
    "rxvlan",  # keep received tags in the frame...
    "txvlan",  # ...and write sent tags into it: XDP only sees the frame
    "rx-vlan-stag-hw-parse",
    "tx-vlan-stag-hw-insert",
    "tx",  # full checksums on locally generated packets: XDP forwards raw frames
)


@dataclass(frozen=True)
class Iface:
    """One interface of the lab."""

    netns: str
    ifname: str
    mac: str
    ifindex: int


@dataclass(frozen=True)
class Veth:
    """Both ends of a veth pair."""

    a: Iface
    b: Iface


def ip_family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr.split("/")[0]).version == 6 else socket.AF_INET


class NetworkConfig:
    """The configuration methods of Lab; Lab supplies netlink() (a pyroute2
    call inside a namespace), run() (a command inside one) and
    _check_open()."""

    def netlink(self, ns: str, fn: Callable[[IPRoute], T]) -> T:
        raise NotImplementedError

    def run(
        self, ns: str, cmd: Sequence[str], *, check: bool = True, timeout: float | None = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def sysctl(self, ns: str, values: Mapping[str, object]) -> None:
        """Set sysctls inside `ns` (one process for all of them)."""
        if values:
            self.run(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def read_sysctl(self, ns: str, key: str) -> str:
        return self.run(ns, ["sysctl", "-n", key]).stdout.strip()

    # -- links ---------------------------------------------------------

    def link_index(self, ns: str, ifname: str) -> int:
        found = self.netlink(ns, lambda ipr: ipr.link_lookup(ifname=ifname))
        if not found:
            raise LabError(f"no interface {ifname} in {ns}")
        return int(found[0])

    def iface(self, ns: str, ifname: str) -> Iface:
        idx = self.link_index(ns, ifname)
        link = self.netlink(ns, lambda ipr: ipr.get_links(idx)[0])
        return Iface(ns, ifname, str(link.get("IFLA_ADDRESS")), idx)

    def set_up(self, ns: str, ifname: str) -> None:
        idx = self.link_index(ns, ifname)
        self.netlink(ns, lambda ipr: ipr.link("set", index=idx, state="up"))

    def add_veth(
        self,
        ns_a: str,
        name_a: str,
        ns_b: str,
        name_b: str,
        *,
        mac_a: str | None = None,
        mac_b: str | None = None,
        mtu: int | None = None,
        offloads_off: Sequence[str] | None = DEFAULT_OFFLOADS_OFF,
        up: bool = True,
    ) -> Veth:
        """A veth pair with end `name_a` in `ns_a` and `name_b` in `ns_b`.

        By default both ends get VLAN offloads and tx checksum offload off
        (DEFAULT_OFFLOADS_OFF): tags stay in the frame where XDP sees them,
        and locally generated packets carry full checksums because XDP
        forwards raw frames. Pass offloads_off=None to keep the defaults.
        """
        self._check_open()
        for ns in (ns_a, ns_b):
            self.netlink(ns, lambda ipr: None)  # LabError unless a namespace of this lab
        peer: dict[str, Any] = {"ifname": name_b}
        if ns_b != ns_a:
            peer["net_ns_fd"] = ns_b
        if mac_b:
            peer["address"] = mac_b
        if mtu:
            peer["mtu"] = mtu
        kwargs: dict[str, Any] = {"ifname": name_a, "kind": "veth", "peer": peer}
        if mac_a:
            kwargs["address"] = mac_a
        if mtu:
            kwargs["mtu"] = mtu
        self.netlink(ns_a, lambda ipr: ipr.link("add", **kwargs))
        if offloads_off:
            self.set_offloads(ns_a, name_a, {f: False for f in offloads_off})
            self.set_offloads(ns_b, name_b, {f: False for f in offloads_off})
        if up:
            self.set_up(ns_a, name_a)
            self.set_up(ns_b, name_b)
        return Veth(self.iface(ns_a, name_a), self.iface(ns_b, name_b))

    def set_offloads(self, ns: str, ifname: str, features: Mapping[str, bool]) -> None:
        """`ethtool -K` inside `ns`."""
        args = [x for f, on in features.items() for x in (f, "on" if on else "off")]
        self.run(ns, ["ethtool", "-K", ifname, *args])

    def offloads(self, ns: str, ifname: str) -> dict[str, bool]:
        """Current `ethtool -k` features of an interface."""
        out = self.run(ns, ["ethtool", "-k", ifname]).stdout
        feats: dict[str, bool] = {}
        for line in out.splitlines()[1:]:
            key, _, rest = line.strip().partition(":")
            if rest:
                feats[key] = rest.split()[0] == "on"
        return feats

    def add_bridge(self, ns: str, name: str = "br0") -> Iface:
        """A VLAN-unaware bridge, up, forwarding at once.

        STP off (ports forward as soon as they are up) and multicast snooping
        off (IPv6 neighbour discovery is flooded, there is no querier)."""
        self._check_open()
        self.netlink(ns, lambda ipr: ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_mcast_snooping=0))
        self.set_up(ns, name)
        return self.iface(ns, name)

    def enslave(self, ns: str, ifname: str, bridge: str) -> None:
        idx, master = self.link_index(ns, ifname), self.link_index(ns, bridge)
        self.netlink(ns, lambda ipr: ipr.link("set", index=idx, master=master))

    def add_vxlan(
        self,
        ns: str,
        name: str,
        vni: int,
        *,
        local: str,
        dev: str,
        address: str | None = None,
        fdb: Iterable[tuple[str, str]] = (),
        learning: bool = True,
    ) -> Iface:
        """A VXLAN device on `dev` (UDP 4789) sourcing from `local`, with
        forwarding entries (mac, remote endpoint; 00:00:00:00:00:00 for
        what it does not know), an address ("10.9.0.1/24") and up.

        Tx checksum offload off, as on lab veths: locally made packets would
        carry a partial checksum that the XDP hop forwards as it is. Without
        learning, only the given entries send: a backend then never learns
        the client's MAC at the LB node's endpoint, so replies keep going
        straight to the client."""
        self._check_open()
        cmd = ["ip", "link", "add", name, "type", "vxlan", "id", str(vni), "local", local, "dstport", "4789"]
        self.run(ns, [*cmd, "dev", dev, *(() if learning else ("nolearning",))])
        for mac, remote in fdb:
            self.run(ns, ["bridge", "fdb", "append", mac, "dev", name, "dst", remote])
        self.set_offloads(ns, name, {"tx": False})
        if address is not None:
            self.add_address(ns, name, address)
        self.set_up(ns, name)
        return self.iface(ns, name)

    def add_fdb_static(self, ns: str, entries: Iterable[tuple[str, str]]) -> None:
        """Static bridge FDB entries, (mac, port) pairs.

        Hosts that never transmit (an LBN before its program runs) would
        otherwise be reached by flooding; static entries make the fabric
        deterministic."""
        lines = [f"fdb replace {mac} dev {port} master static" for mac, port in entries]
        if lines:
            run_cmd(["bridge", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    # -- addresses, routes, neighbours ----------------------------------

    def add_address(self, ns: str, ifname: str, cidr: str) -> None:
        """Add an address ("10.1.0.1/24", "fd00:1::1/64") to an interface."""
        iface = ipaddress.ip_interface(cidr)
        idx = self.link_index(ns, ifname)
        self.netlink(
            ns,
            lambda ipr: ipr.addr(
                "add",
                index=idx,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                family=ip_family(str(iface.ip)),
            ),
        )

    def set_route(self, ns: str, dst: str, *, via: str | None = None, dev: str | None = None) -> None:
        """Add or replace a route; `dst` may be "default" (family from `via`)."""
        if dst == "default":
            if via is None:
                raise ValueError("a default route needs `via`")
            family = ip_family(via)
            dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
        else:
            family = ip_family(dst)
        kwargs: dict[str, Any] = {"family": family, "dst": dst}
        if via:
            kwargs["gateway"] = via
        if dev:
            kwargs["oif"] = self.link_index(ns, dev)
        self.netlink(ns, lambda ipr: ipr.route("replace", **kwargs))

    def set_multipath_route(self, ns: str, dst: str, nexthops: Sequence[tuple[str, str]]) -> None:
        """Point `dst` at the (gateway, dev) nexthops, replacing any route.

        One nexthop makes a plain route, several an ECMP route (how flows are
        spread follows the namespace's fib_multipath_hash_policy), none an
        `unreachable` route so senders get an ICMP error at once."""
        kwargs: dict[str, Any] = {"dst": dst, "family": ip_family(dst)}
        if not nexthops:
            kwargs["type"] = "unreachable"
        elif len(nexthops) == 1:
            kwargs["gateway"], kwargs["oif"] = nexthops[0][0], self.link_index(ns, nexthops[0][1])
        else:
            kwargs["multipath"] = [{"gateway": gw, "oif": self.link_index(ns, dev)} for gw, dev in nexthops]
        self.netlink(ns, lambda ipr: ipr.route("replace", **kwargs))

    def route_nexthops(self, ns: str, dst: str) -> list[str]:
        """Gateways of the main-table route to exactly `dst` ([] if there is
        none or it is unreachable)."""
        net = ipaddress.ip_network(dst)
        gws: list[str] = []
        # A dump filtered here: given a dst, pyroute2 does a route *lookup*,
        # which resolves a multipath route to the one nexthop it would use.
        for r in self.netlink(ns, lambda ipr: list(ipr.get_routes(family=ip_family(dst), table=254))):
            rdst = r.get("RTA_DST") or ("0.0.0.0" if net.version == 4 else "::")
            if r["dst_len"] != net.prefixlen or ipaddress.ip_address(rdst) != net.network_address:
                continue
            if r.get("RTA_GATEWAY"):
                gws.append(r.get("RTA_GATEWAY"))
            for hop in r.get("RTA_MULTIPATH") or []:
                if hop.get("RTA_GATEWAY"):
                    gws.append(hop.get("RTA_GATEWAY"))
        return gws

    def add_neighbour(self, ns: str, ifname: str, ip: str, mac: str) -> None:
        """A permanent neighbour entry (never resolved, never expires)."""
        from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

        idx = self.link_index(ns, ifname)
        self.netlink(
            ns,
            lambda ipr: ipr.neigh(
                "replace", dst=ip, lladdr=mac, ifindex=idx, state=NUD_PERMANENT, family=ip_family(ip)
            ),
        )
