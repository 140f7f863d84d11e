"""The routers of a lab fabric speak BGP: a BIRD 2 daemon per tenant router.

`BgpRouters.start(fab)` turns the fabric's hand-written ECMP routes into
routes learnt over BGP from the LB nodes (docs/bgp.md):

    router (per tenant) --pe-- switch --trunk (untagged)-- LBN i

* Peering runs untagged over the switch: each tenant router gets a port
  `pe` (10.254.0.<t+1>/16) and each LBN an address on its trunk
  (10.254.1.<i+1>/16), so the session shares the only link the LB node has:
  a node whose link dies loses its session too. The LBN's XDP program passes
  this traffic to the kernel (it is no service's).
* Each router's BIRD (AS 65000) peers with every LBN (AS 65001) with BFD,
  imports host routes and installs them with `merge paths`, so the kernel
  FIB holds one ECMP route per VIP with one nexthop per announcing LBN. The
  nexthop an LBN announces is its address on the tenant's frontend VLAN,
  which the fabric pins to the LBN's trunk MAC.
* `agent_config(i)` is the `xdsr agent --bgp-config` document for LBN i:
  one peer per tenant router, carrying only that tenant's frontend VLAN.

The static VIP routes the fabric built are removed; BIRD and every file go
with close() (or with the lab).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xdsr.agent.bird import CONNECT_DELAY, CONNECT_RETRY, ERROR_WAIT, BirdError, command, parse_protocols
from xdsr.lab.fabric import TRUNK_IF, Fabric, TenantInfo
from xdsr.lab.netns import LabProcess, wait_until

log = logging.getLogger("xdsr.lab.router")

PEERING_NET = ipaddress.IPv4Network("10.254.0.0/16")
PEER_IF = "pe"


def router_peering_ip(t: int) -> str:
    return str(PEERING_NET.network_address + 1 + t)  # 10.254.0.<t+1>


def lbn_peering_ip(i: int) -> str:
    return str(PEERING_NET.network_address + 256 + 1 + i)  # 10.254.1.<i+1>


@dataclass(frozen=True)
class BgpSpec:
    router_asn: int = 65000
    lbn_asn: int = 65001
    bfd: bool = True
    bfd_interval_ms: int = 100
    bfd_multiplier: int = 3
    hold_time: int = 3  # the smallest BGP allows: the detection time without BFD


@dataclass
class RouterDaemon:
    tenant: TenantInfo
    config: Path
    socket: Path
    proc: LabProcess | None = None


class BgpRouters:
    """A BIRD per tenant router of `fab`, peering with every LB node."""

    def __init__(self, fab: Fabric, spec: BgpSpec, workdir: Path) -> None:
        self.fab = fab
        self.spec = spec
        self.workdir = workdir
        self.routers: dict[str, RouterDaemon] = {}

    @classmethod
    def start(cls, fab: Fabric, spec: BgpSpec | None = None, *, timeout: float = 10.0) -> BgpRouters:
        if shutil.which("bird") is None:
            raise RuntimeError("BIRD 2 is not installed (apt-get install bird2)")
        self = cls(fab, spec or BgpSpec(), Path(tempfile.mkdtemp(prefix=f"{fab.lab.name}-bgp-")))
        try:
            self._wire()
            for t in fab.tenants:
                self._start_router(t, timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _wire(self) -> None:
        fab, lab = self.fab, self.fab.lab
        for i, lbn in enumerate(fab.lbns):
            lab.add_address(lbn.netns, TRUNK_IF, f"{lbn_peering_ip(i)}/{PEERING_NET.prefixlen}")
        for t in fab.tenants:
            mac = f"02:1b:03:{t.index:02x}:00:01"
            port = f"{t.name}-rp"
            lab.add_veth(fab.switch_ns, port, t.router_ns, PEER_IF, mac_b=mac)
            lab.enslave(fab.switch_ns, port, fab.bridge)
            lab.add_fdb_static(fab.switch_ns, [(mac, port)])
            lab.add_address(t.router_ns, PEER_IF, f"{router_peering_ip(t.index)}/{PEERING_NET.prefixlen}")
            # From now on BIRD decides where the VIPs go.
            for dst in (f"{t.vip}/32", f"{t.vip6}/128" if t.vip6 else None):
                if dst is not None:
                    _delete_route(fab, t.router_ns, dst)

    def router_config(self, t: TenantInfo) -> str:
        s = self.spec
        ipv6 = t.vip6 is not None
        out = [
            f"# The lab router of tenant {t.name} (xdsr.lab.router).",
            "log stderr { info, remote, warning, error, auth, fatal, bug };",
            f"router id {router_peering_ip(t.index)};",
            "protocol device { scan time 10; }",
            # merge paths: equal BGP routes from several LBNs become one ECMP route.
            "protocol kernel xdsr_k4 { ipv4 { export all; }; merge paths on limit 64; }",
        ]
        if ipv6:
            out.append("protocol kernel xdsr_k6 { ipv6 { export all; }; merge paths on limit 64; }")
        if s.bfd:
            ms = s.bfd_interval_ms
            out.append(
                f'protocol bfd {{ interface "*" {{ min rx interval {ms} ms; min tx interval {ms} ms; '
                f"multiplier {s.bfd_multiplier}; }}; }}"
            )
        # Only host routes: an LB node announces VIPs, nothing else.
        chans = "  ipv4 { import where net.len = 32; export none; };\n"
        if ipv6:
            chans += "  ipv6 { import where net.len = 128; export none; };\n"
        out.append(
            "template bgp lbn {\n"
            f"  local {router_peering_ip(t.index)} as {s.router_asn};\n"
            f"  hold time {s.hold_time};\n  keepalive time {max(1, s.hold_time // 3)};\n"
            f"  connect delay time {CONNECT_DELAY};\n  connect retry time {CONNECT_RETRY};\n"
            f"  error wait time {ERROR_WAIT[0]}, {ERROR_WAIT[1]};\n" + ("  bfd on;\n" if s.bfd else "") + chans + "}"
        )
        for i in range(len(self.fab.lbns)):
            out.append(f"protocol bgp lbn{i} from lbn {{ neighbor {lbn_peering_ip(i)} as {s.lbn_asn}; }}")
        return "\n".join(out) + "\n"

    def _start_router(self, t: TenantInfo, timeout: float) -> None:
        conf = self.workdir / f"{t.name}.conf"
        sock = self.workdir / f"{t.name}.ctl"
        conf.write_text(self.router_config(t))
        r = RouterDaemon(t, conf, sock)
        self.routers[t.name] = r
        r.proc = self.fab.lab.popen(
            t.router_ns,
            ["bird", "-f", "-c", str(conf), "-s", str(sock), "-P", str(self.workdir / f"{t.name}.pid")],
            stdout=subprocess.DEVNULL,
        )
        wait_until(
            lambda: self.ready(t.name),
            timeout=timeout,
            what=f"BIRD of router {t.name}",
        )

    def ready(self, tenant: str) -> bool:
        r = self.routers[tenant]
        if r.proc is None or r.proc.poll() is not None:
            err = r.proc.stderr_text() if r.proc else ""
            raise RuntimeError(f"BIRD of router {tenant} exited: {err}")
        try:
            self._command(tenant, "show status")
        except BirdError:
            return False
        return True

    def _command(self, tenant: str, text: str) -> Any:
        return asyncio.run(command(self.routers[tenant].socket, text, timeout=2.0))

    # -- what the router sees ----------------------------------------------

    def sessions(self, tenant: str | int = 0) -> dict[str, str]:
        """LBN name -> its BGP session's state as this router sees it ("Established", ...)."""
        name = self.fab.tenant(tenant).name
        protos = parse_protocols(self._command(name, "show protocols all"))
        return {n: p.details.get("BGP state", p.info) for n, p in protos.items() if p.proto == "BGP"}

    def show_route(self, tenant: str | int, prefix: str) -> str:
        """BIRD's `show route all PREFIX` on the tenant's router: every path and its attributes."""
        name = self.fab.tenant(tenant).name
        return str(self._command(name, f"show route {prefix} all").text())

    def bfd_sessions(self, tenant: str | int = 0) -> dict[str, str]:
        """Peer address -> its BFD session's state on the router ("Up", "Down", "Init")."""
        name = self.fab.tenant(tenant).name
        out = {}
        for _code, line in self._command(name, "show bfd sessions").lines:
            parts = line.split()
            if len(parts) >= 3:
                try:
                    addr = str(ipaddress.ip_address(parts[0]))
                except ValueError:
                    continue
                out[addr] = parts[2]
        return out

    def protected(self, tenant: str | int = 0) -> list[str]:
        """LB nodes whose session is established and, with BFD, whose BFD session is up:
        only then is a silent node caught in BFD time (a BFD session comes up
        after its BGP session, at BFD's slow pace, within about a second)."""
        up = self.established(tenant)
        if not self.spec.bfd:
            return up
        bfd = self.bfd_sessions(tenant)
        return [n for n in up if bfd.get(lbn_peering_ip(int(n.removeprefix("lbn")))) == "Up"]

    def established(self, tenant: str | int = 0) -> list[str]:
        return sorted(n for n, s in self.sessions(tenant).items() if s == "Established")

    def nexthops(self, tenant: str | int = 0, ipv6: bool = False) -> list[str]:
        """The gateways of the VIP's route in the router's kernel FIB."""
        return sorted(self.fab.route_nexthops(tenant, ipv6=ipv6))

    def lbns_in_route(self, tenant: str | int = 0, ipv6: bool = False) -> list[int]:
        """Which LB nodes (indexes) the router's kernel sends the VIP to."""
        t = self.fab.tenant(tenant)
        hops = t.nexthops6 if ipv6 else t.nexthops
        assert hops is not None
        got = {ipaddress.ip_address(h) for h in self.nexthops(tenant, ipv6)}
        return [i for i, h in enumerate(hops) if ipaddress.ip_address(h) in got]

    # -- the LB nodes' side ------------------------------------------------

    def agent_config(self, i: int, **overrides: Any) -> dict[str, Any]:
        """`xdsr agent --bgp-config` for LBN i: a peer per tenant router."""
        s = self.spec
        peers = []
        for t in self.fab.tenants:
            peer: dict[str, Any] = {
                "name": f"rt_{t.name}",
                "address": router_peering_ip(t.index),
                "asn": s.router_asn,
                "source": lbn_peering_ip(i),
                "segments": [t.frontend_vid],
                "next_hop": t.nexthops[i],
            }
            if t.nexthops6:
                peer["next_hop6"] = t.nexthops6[i]
            peers.append(peer)
        doc: dict[str, Any] = {
            "asn": s.lbn_asn,
            "router_id": lbn_peering_ip(i),
            "hold_time": s.hold_time,
            "bfd": {"enabled": s.bfd, "interval_ms": s.bfd_interval_ms, "multiplier": s.bfd_multiplier},
            "peers": peers,
        }
        doc.update(overrides)
        return doc

    def write_agent_configs(self, **overrides: Any) -> dict[str, Path]:
        """One config file per LBN (named lbn<i>, as LocalCluster.on_fabric names agents)."""
        out = {}
        for i in range(len(self.fab.lbns)):
            path = self.workdir / f"lbn{i}.agent-bgp.yaml"
            path.write_text(yaml.safe_dump(self.agent_config(i, **overrides)))
            out[f"lbn{i}"] = path
        return out

    def agent_args(self, **overrides: Any) -> dict[str, list[str]]:
        """`--bgp-config FILE` per agent, for LocalCluster(agent_args=...)."""
        return {name: ["--bgp-config", str(p)] for name, p in self.write_agent_configs(**overrides).items()}

    def close(self) -> None:
        for r in self.routers.values():
            if r.proc is not None:
                self.fab.lab.stop(r.proc)
                r.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BgpRouters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _delete_route(fab: Fabric, ns: str, dst: str) -> None:
    net = ipaddress.ip_network(dst)
    fam = 10 if net.version == 6 else 2
    fab.lab.netlink(ns, lambda ipr: ipr.route("del", dst=dst, family=fam))
