"""The devices under test: what runs on the DUT's veth, what the tester
sends it, and what a correctly handled frame looks like when it comes back.

Every DUT is one XDP program on the DUT end of the veth pair (`d0`); the
harness swaps them in and out atomically, so all DUTs are set up once and
compared side by side, trial by trial.

  loopback   xdp_tx: every frame straight back, unchanged (the upper bound)
  dnat       xdp_pass, then the kernel: conntrack, iptables DNAT for 128 VIPs
             (each to a range of ~31 targets, 4000 in all), routing back out
             of d0 toward the tester; frames untagged
  xdsr-vxlan scenario A behind VXLAN (inner frames of the sizes measured)
  xdsr-a/-b  the xdsr data plane with scenario A (1 VIP, 255 backends) or B
             (128 VIPs, 4000 backends), attached through the Dataplane API
  broken     loopback that corrupts every Nth frame (the harness's own tests)
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xdsr.bench.rfc2544.frames import Vxlan
from xdsr.bench.rfc2544.programs import Expectation, load_broken, load_simple
from xdsr.bench.scenarios import (
    BACKEND_VNI,
    FRONTEND_VLAN,
    FRONTEND_VNI,
    LB_VTEP,
    PORT,
    SCENARIO_A,
    SCENARIO_B,
    SCENARIO_VXLAN,
    Scenario,
)
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.model import TunnelEndpoint
from xdsr.dataplane.netns import in_netns

if TYPE_CHECKING:
    from xdsr.dataplane.loader import Dataplane
    from xdsr.lab.netns import Lab
    from xdsr.lab.network import Iface


@dataclass(frozen=True)
class Testbed:
    """Two namespaces joined by one veth pair: tester `t0` <-> DUT `d0`."""

    lab: Lab
    tester_ns: str
    dut_ns: str
    tester: Iface  # t0
    dut: Iface  # d0


class Dut(ABC):
    """One device under test."""

    key: str  # short name: loopback, dnat, xdsr-a, ...
    label: str  # column title in the report
    tagged: bool = True  # frames carry the frontend VLAN tag
    vxlan: Vxlan | None = None  # frames are VXLAN-encapsulated (and come back so)

    def __init__(self) -> None:
        self._prog: bpf.Program | None = None

    @abstractmethod
    def vips(self) -> list[str]:
        """Destination addresses the generator picks from, at random."""

    @abstractmethod
    def setup(self, tb: Testbed) -> None:
        """Create what the DUT needs; afterwards program() is ready."""

    @abstractmethod
    def expectations(self, tb: Testbed) -> list[Expectation]:
        """Every (dst IP, dst MAC, VID) a correctly handled frame may carry."""

    @abstractmethod
    def src_mac(self, tb: Testbed) -> str:
        """Source MAC of every correctly handled frame."""

    def program(self) -> bpf.Program:
        if self._prog is None:
            raise RuntimeError(f"{self.key}: setup() first")
        return self._prog

    def before_trial(self, tb: Testbed) -> None:  # noqa: B027 - optional hook
        """Called before each slice's warm-up, with the DUT's program attached."""

    def teardown(self, tb: Testbed) -> None:  # noqa: B027 - optional hook
        """Undo what setup() changed in the namespaces (before the lab goes)."""

    def describe(self) -> dict[str, object]:
        return {"key": self.key, "label": self.label, "tagged": self.tagged}

    def close(self) -> None:
        if self._prog is not None:
            self._prog.close()
            self._prog = None


class LoopbackDut(Dut):
    key = "loopback"
    label = "Loopback"

    def __init__(self, scenario: Scenario = SCENARIO_B) -> None:
        super().__init__()
        self.scenario = scenario  # only for its VIPs: the same traffic as xdsr B

    def vips(self) -> list[str]:
        return self.scenario.vips()

    def setup(self, tb: Testbed) -> None:
        self._prog = load_simple("xdp_tx")

    def expectations(self, tb: Testbed) -> list[Expectation]:
        return [Expectation(v, tb.dut.mac, FRONTEND_VLAN) for v in self.vips()]

    def src_mac(self, tb: Testbed) -> str:
        return tb.tester.mac  # unchanged


class LoopbackVxlanDut(LoopbackDut):
    """The loopback with the VXLAN scenario's frames: the baseline of
    xdsr-vxlan, whose frames are 50 bytes longer and which the generator and
    the counter handle with more work than the VLAN ones. xdsr-vxlan's cost
    over this is the data plane's own, comparable with xdsr A's over the
    loopback."""

    key = "loopback-vxlan"
    label = "Loopback (VXLAN frames)"
    tagged = False
    vxlan = Vxlan(src="192.0.2.250", dst=LB_VTEP, vni=FRONTEND_VNI, inner_dst_mac="02:0a:00:00:00:01")

    def __init__(self) -> None:
        super().__init__(SCENARIO_VXLAN)

    def expectations(self, tb: Testbed) -> list[Expectation]:
        return [Expectation(v, self.vxlan.inner_dst_mac, FRONTEND_VNI & 0xFFFF) for v in self.vips()]


class BrokenDut(LoopbackDut):
    """Sends frames back like the loopback, but every Nth with a wrong MAC."""

    key = "broken"
    label = "Broken (test)"

    def __init__(self, every: int = 4) -> None:
        super().__init__()
        self.every = every

    def setup(self, tb: Testbed) -> None:
        self._prog = load_broken(self.every)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "corrupts_every": self.every}


class XdsrDut(Dut):
    """The xdsr data plane with one of the paper's scenarios.

    `expect` (tests only) makes the tester expect another scenario's
    backends: a deliberately wrong expectation map.
    """

    def __init__(self, scenario: Scenario, expect: Scenario | None = None) -> None:
        super().__init__()
        self.scenario = scenario
        self.expect = expect or scenario
        self.key = f"xdsr-{scenario.name.lower()}"
        self.label = f"xdsr {scenario.name} ({scenario.n_vips} VIP{'s' if scenario.n_vips > 1 else ''}, " + (
            f"{scenario.n_backends} backends)"
        )
        self.dp: Dataplane | None = None
        self.n_services = 0

    def vips(self) -> list[str]:
        return self.scenario.vips()

    def setup(self, tb: Testbed) -> None:
        from xdsr.dataplane.loader import Dataplane
        from xdsr.dataplane.state import apply

        pin = Path(tb.lab.bpffs_dir()) / self.key
        self.dp = Dataplane.create_or_open(pin)
        services = self.scenario.services()
        apply(self.dp, services)
        self.n_services = len(services)
        # The production path: load for d0's MAC, attach, pin. The harness
        # re-attaches this very program (by id) for each trial.
        att = self.dp.attach(tb.dut.ifname, netns=tb.dut_ns, force=True)
        self._prog = bpf.Program.from_id(att.prog_id)

    def expectations(self, tb: Testbed) -> list[Expectation]:
        out: dict[Expectation, None] = {}  # UDP and TCP services share backends
        for svc in self.expect.services():
            for b in svc.backends:
                out[Expectation(str(svc.key.vip), b.mac, b.vlan or None)] = None
        return list(out)

    def src_mac(self, tb: Testbed) -> str:
        return tb.dut.mac

    def forwarded(self) -> int:
        """Packets the data plane counted as forwarded so far (all CPUs)."""
        from xdsr.dataplane import abi
        from xdsr.dataplane.state import read_stats

        if self.dp is None:
            return 0
        return int(read_stats(self.dp, services=[]).reasons[abi.Reason.FORWARDED].packets)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "scenario": self.scenario.name,
            "vips": self.scenario.n_vips,
            "backends": self.scenario.n_backends,
            "services": self.n_services,
            "table_sizes": sorted({s.table_size for s in self.scenario.services()}),
            "expectations_from_scenario": self.expect.name,
        }

    def close(self) -> None:
        super().close()
        if self.dp is not None:
            self.dp.close()
            self.dp = None


# Addressing of the DNAT DUT: the link to the tester, and the DNAT targets
# (VIP v's targets are 172.16.v.1 .. 172.16.v.n), all "behind" the tester.
DNAT_LINK_DUT = "192.0.2.2/24"
DNAT_LINK_GW = "192.0.2.1"
DNAT_TARGETS = "172.16.0.0/12"


class DnatDut(Dut):
    """iptables DNAT in the DUT namespace: the kernel's path.

    The paper applied the rules of all 128 VIPs to DNAT; here each VIP's
    rule (UDP and TCP port 9) translates to an address range as large as
    its pool in scenario B, 4000 targets in all, and the kernel picks one
    per connection. Every frame the generator sends is a new flow, so every
    frame creates a conntrack entry (the table stays at its limit, the kernel
    evicting unreplied entries early); the conntrack table is flushed before
    each trial so that all trials start alike.
    """

    key = "dnat"
    label = "iptables DNAT"
    tagged = False  # no VLAN devices on this kernel: the kernel path sees untagged frames

    def __init__(self, scenario: Scenario = SCENARIO_B) -> None:
        super().__init__()
        self.scenario = scenario
        self.n_rules = 0
        self.flushed: list[int] = []  # conntrack entries found at each flush

    def vips(self) -> list[str]:
        return self.scenario.vips()

    def targets(self) -> dict[str, list[str]]:
        out = {}
        for v, vip in enumerate(self.vips()):
            n = len(range(v, self.scenario.n_backends, self.scenario.n_vips))
            out[vip] = [f"172.16.{v}.{k}" for k in range(1, n + 1)]
        return out

    def setup(self, tb: Testbed) -> None:
        lab, ns = tb.lab, tb.dut_ns
        lab.add_address(ns, tb.dut.ifname, DNAT_LINK_DUT)
        lab.add_neighbour(ns, tb.dut.ifname, DNAT_LINK_GW, tb.tester.mac)
        lab.set_route(ns, DNAT_TARGETS, via=DNAT_LINK_GW)
        rules = ["*nat", ":PREROUTING ACCEPT [0:0]"]
        for vip, targets in self.targets().items():
            for proto in ("udp", "tcp"):
                rules.append(
                    f"-A PREROUTING -d {vip}/32 -p {proto} -m {proto} --dport {PORT} "
                    f"-j DNAT --to-destination {targets[0]}-{targets[-1]}"
                )
        rules.append("COMMIT")
        lab.run(ns, ["iptables-restore", "--noflush", "-w"], input="\n".join(rules) + "\n")
        self.n_rules = len(rules) - 3
        # A veth accepts XDP frames from its peer only with an XDP program
        # of its own; XDP_PASS hands them to the stack.
        self._prog = load_simple("xdp_pass")

    def before_trial(self, tb: Testbed) -> None:
        from pyroute2 import Conntrack

        with in_netns(tb.dut_ns):
            ct = Conntrack()
            try:
                self.flushed.append(int(ct.count()))
                ct.flush()
            finally:
                ct.close()

    def expectations(self, tb: Testbed) -> list[Expectation]:
        return [Expectation(t, tb.tester.mac, None) for ts in self.targets().values() for t in ts]

    def src_mac(self, tb: Testbed) -> str:
        return tb.dut.mac

    def describe(self) -> dict[str, object]:
        n_targets = sum(len(t) for t in self.targets().values())
        net = ipaddress.ip_network(DNAT_TARGETS)
        return {
            **super().describe(),
            "rules": self.n_rules,
            "vips": len(self.vips()),
            "targets": n_targets,
            "net": str(net),
        }

    def teardown(self, tb: Testbed) -> None:
        """Remove the rules (the namespace's deletion would too)."""
        tb.lab.run(tb.dut_ns, ["iptables", "-w", "-t", "nat", "-F"], check=False)


class XdsrVxlanDut(XdsrDut):
    """Scenario A behind VXLAN: the VIP on VNI 1000, its 255 backends on VNI
    2000 behind 64 tunnel endpoints. The frames are 64-byte (or IMIX) inner
    frames in VXLAN over untagged IPv4 to the DUT's endpoint; they come back
    re-encapsulated, and the counter checks the inner destination MAC and
    address and the VNI. The underlay next hop is the tester."""

    tagged = False
    vxlan = Vxlan(src="192.0.2.250", dst=LB_VTEP, vni=FRONTEND_VNI, inner_dst_mac="02:0a:00:00:00:01")

    def __init__(self) -> None:
        super().__init__(SCENARIO_VXLAN)
        self.label = "xdsr VXLAN (scenario A behind VXLAN: 1 VIP, 255 backends)"

    def setup(self, tb: Testbed) -> None:
        from xdsr.dataplane.loader import Dataplane
        from xdsr.dataplane.state import apply

        pin = Path(tb.lab.bpffs_dir()) / self.key
        self.dp = Dataplane.create_or_open(pin)
        services = self.scenario.services(next_hop=tb.tester.mac)
        apply(self.dp, services)
        self.n_services = len(services)
        tunnel = TunnelEndpoint(vtep4=ipaddress.IPv4Address(LB_VTEP))
        att = self.dp.attach(tb.dut.ifname, netns=tb.dut_ns, force=True, tunnel=tunnel)
        self._prog = bpf.Program.from_id(att.prog_id)

    def expectations(self, tb: Testbed) -> list[Expectation]:
        out: dict[Expectation, None] = {}
        for svc in self.scenario.services(next_hop=tb.tester.mac):
            for b in svc.backends:
                out[Expectation(str(svc.key.vip), b.mac, BACKEND_VNI & 0xFFFF)] = None
        return list(out)


DUT_KEYS = ("loopback", "dnat", "xdsr-a", "xdsr-b", "loopback-vxlan", "xdsr-vxlan")
ALL_DUT_KEYS = (*DUT_KEYS, "broken")


def make_dut(key: str) -> Dut:
    if key == "loopback":
        return LoopbackDut()
    if key == "dnat":
        return DnatDut()
    if key == "xdsr-a":
        return XdsrDut(SCENARIO_A)
    if key == "xdsr-b":
        return XdsrDut(SCENARIO_B)
    if key == "xdsr-vxlan":
        return XdsrVxlanDut()
    if key == "loopback-vxlan":
        return LoopbackVxlanDut()
    if key == "broken":
        return BrokenDut()
    raise ValueError(f"unknown device under test {key!r} (one of {', '.join(ALL_DUT_KEYS)})")
