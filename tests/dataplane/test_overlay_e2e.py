"""VXLAN and Geneve end to end in network namespaces, with real TCP.

An underlay bridge joins the LB node's trunk, two tenants' client-side
tunnel endpoints and a backend endpoint per tenant. Each side runs a Linux
VXLAN device: a client's sends everything on its VNI to the LB node's
endpoint (its default FDB entry), a backend's answers its tenant's client
directly. The two tenants have the same VIP, the same client address and
the same backend address, on different VNIs. The LB node runs the XDP
program with its endpoint configured; nothing else on it knows VXLAN.

This kernel has no Geneve devices. Tenant g's endpoints run the same VXLAN
devices with a tc program on their underlay port (bpf/lab/geneve_swap.bpf.c)
that turns every VXLAN header into a Geneve header on the way out and back
on the way in (both are 8 bytes, the VNI in the same place), so the wire,
and the LB node, carry Geneve with real TCP inside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import needs_root, private_pin_dir
from xdsr.dataplane import services as dpservices
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import apply, read_stats
from xdsr.lab import Lab
from xdsr.model.agent import Services
from xdsr.paths import bpf_object

pytestmark = needs_root

VIP = "203.0.113.10"
LB_VTEP = "192.0.2.1"
CLIENT_ADDR, BACKEND_ADDR = "10.0.0.100", "10.0.0.5"  # the same in both tenants
# VNI, client's endpoint, backend's endpoint
TENANTS = {
    "a": (1000, "192.0.2.100", "192.0.2.21"),
    "b": (1001, "192.0.2.101", "192.0.2.22"),
    "g": (3000, "192.0.2.102", "192.0.2.23"),
}
GENEVE = {"g"}


def _geneve_on_the_wire(lab: Lab, ns: str) -> None:
    obj = str(bpf_object("geneve_swap"))
    lab.run(ns, ["tc", "qdisc", "add", "dev", "u0", "clsact"])
    lab.run(ns, ["tc", "filter", "add", "dev", "u0", "egress", "bpf", "da", "obj", obj, "sec", "tc/egress"])
    lab.run(ns, ["tc", "filter", "add", "dev", "u0", "ingress", "bpf", "da", "obj", obj, "sec", "tc/ingress"])


@dataclass
class Overlay:
    lab: Lab
    pin: object
    lbn: str
    ns: dict[str, str]  # role -> namespace


def _vxlan(lab: Lab, ns: str, vni: int, local: str, default_remote: str, addr: str) -> str:
    """A VXLAN device on the namespace's underlay port u0, sending what it
    does not know to default_remote."""
    fdb = [("00:00:00:00:00:00", default_remote)]
    return lab.add_vxlan(ns, "vx", vni, local=local, dev="u0", address=f"{addr}/24", fdb=fdb).mac


@pytest.fixture(scope="module")
def overlay() -> Iterator[Overlay]:
    with Lab("xovl") as lab, private_pin_dir() as pin:
        fab = lab.add_netns("fab", ipv6=False)
        lab.add_bridge(fab, "br0")
        ns = {"lbn": lab.add_netns("lbn", ipv6=False)}
        for t in TENANTS:
            ns[f"client-{t}"] = lab.add_netns(f"client-{t}", ipv6=False)
            ns[f"backend-{t}"] = lab.add_netns(f"backend-{t}", ipv6=False)
        underlay = {"lbn": LB_VTEP} | {f"client-{t}": v[1] for t, v in TENANTS.items()}
        underlay |= {f"backend-{t}": v[2] for t, v in TENANTS.items()}
        macs = {}
        for role, addr in underlay.items():
            port = f"p-{role}"[:15]
            lab.add_veth(ns[role], "u0", fab, port)
            lab.enslave(fab, port, "br0")
            lab.add_address(ns[role], "u0", f"{addr}/24")
            macs[role] = lab.iface(ns[role], "u0").mac
        # XDP_TX out of a veth needs a program on its peer.
        lab.attach_xdp(fab, "p-lbn")
        hops = {}
        for t, (vni, client, backend) in TENANTS.items():
            c, b = ns[f"client-{t}"], ns[f"backend-{t}"]
            _vxlan(lab, c, vni, client, LB_VTEP, CLIENT_ADDR)
            # The VIP is on the tenant network: frames to it go to the LB node.
            lab.run(c, ["ip", "route", "add", f"{VIP}/32", "dev", "vx"])
            lab.run(c, ["ip", "neigh", "add", VIP, "lladdr", "02:00:00:00:0a:0a", "dev", "vx"])
            inner = _vxlan(lab, b, vni, backend, client, BACKEND_ADDR)
            if t in GENEVE:
                _geneve_on_the_wire(lab, c)
                _geneve_on_the_wire(lab, b)
            lab.run(b, ["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])
            lab.sysctl(
                b,
                {
                    "net.ipv4.conf.all.arp_ignore": 1,
                    "net.ipv4.conf.all.arp_announce": 2,
                    "net.ipv4.conf.all.rp_filter": 0,
                },
            )
            lab.sysctl(c, {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.vx.rp_filter": 0})
            hops[backend] = macs[f"backend-{t}"]
            proc = lab.popen(b, [sys.executable, "-m", "xdsr.lab.echo", "--name", f"backend-{t}", "--tcp-port", "80"])
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "ready"
            hops[f"inner-{t}"] = inner
        state = Services.model_validate(
            {
                "services": [
                    {
                        "vip": VIP,
                        "port": 80,
                        "protocol": "tcp",
                        "segment": {"type": "geneve" if t in GENEVE else "vxlan", "id": vni},
                        "backends": [{"mac": hops[f"inner-{t}"], "vni": vni, "vtep": backend, "address": BACKEND_ADDR}],
                    }
                    for t, (vni, _, backend) in TENANTS.items()
                ]
            }
        )
        dpservices.check(state.services)
        built = [dpservices.to_service(s, hop_of=lambda v: hops.get(str(v)))[0] for s in state.services]
        assert all(len(s.backends) == 1 for s in built)
        _xdsr("dp", "attach", "u0", "--netns", ns["lbn"], "--pin-dir", str(pin), "--vtep", LB_VTEP)
        try:
            with Dataplane.open(pin) as dp:
                apply(dp, built)
            yield Overlay(lab, pin, ns["lbn"], ns)
        finally:
            _xdsr("dp", "detach", "u0", "--netns", ns["lbn"], "--pin-dir", str(pin))


def _xdsr(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "xdsr.cli", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"xdsr {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


_CLIENT = textwrap.dedent(
    """
    import socket, sys
    names = []
    for _ in range(int(sys.argv[2])):
        with socket.create_connection((sys.argv[1], 80), timeout=5) as s:
            f = s.makefile("rwb")
            for _ in range(3):
                f.write(b"hello\\n"); f.flush()
                names.append(f.readline().decode().strip())
    print(" ".join(names))
    """
)


def _connect(o: Overlay, tenant: str, conns: int) -> list[str]:
    out = o.lab.output(o.ns[f"client-{tenant}"], [sys.executable, "-c", _CLIENT, VIP, str(conns)], timeout=60)
    return out.split()


def _count(o: Overlay, ns: str, rule: list[str]) -> int:
    out = o.lab.output(ns, ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"])
    for line in out.splitlines():
        if rule[-1] in line:
            return int(line.split()[0])
    raise AssertionError(out)


def _overlay_packets(dp: Dataplane) -> int:
    """Frames re-encapsulated to backends behind tunnels: the counters of the VXLAN/Geneve services."""
    return sum(c.packets for k, c in read_stats(dp).services.items() if k.overlay)


def test_two_tenants_same_vip_same_addresses_stay_apart(overlay: Overlay) -> None:
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        before = _overlay_packets(dp)
    assert _connect(overlay, "a", 10) == ["backend-a"] * 30
    assert _connect(overlay, "b", 10) == ["backend-b"] * 30
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        assert _overlay_packets(dp) - before >= 2 * 10 * 5


def test_replies_go_straight_from_the_backend_to_the_client(overlay: Overlay) -> None:
    """On client a's endpoint: every VXLAN frame that comes in comes from
    the backend's endpoint, none from the LB node's; and the LB node
    re-encapsulated exactly the frames the client sent."""
    c = overlay.ns["client-a"]
    _, _, backend = TENANTS["a"]
    rules = {
        "from-lbn": ["-s", LB_VTEP, "-p", "udp", "--dport", "4789"],
        "from-backend": ["-s", backend, "-p", "udp", "--dport", "4789"],
    }
    for name, match in rules.items():
        overlay.lab.run(c, ["iptables", "-w", "-I", "INPUT", *match, "-m", "comment", "--comment", name])
    overlay.lab.run(c, ["iptables", "-w", "-I", "OUTPUT", "-d", LB_VTEP, "-p", "udp", "--dport", "4789",
                        "-m", "comment", "--comment", "to-lbn"])  # fmt: skip
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        before = sum(c.packets for k, c in read_stats(dp).services.items() if k.seg_id == TENANTS["a"][0])
    assert _connect(overlay, "a", 8) == ["backend-a"] * 24
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        after = sum(c.packets for k, c in read_stats(dp).services.items() if k.seg_id == TENANTS["a"][0])
    out = overlay.lab.output(c, ["iptables", "-w", "-L", "OUTPUT", "-v", "-x", "-n"])
    sent = next(int(line.split()[0]) for line in out.splitlines() if "to-lbn" in line)
    assert sent >= 8 * 5
    assert after - before == sent
    assert _count(overlay, c, rules["from-backend"] + ["from-backend"]) >= 8 * 5
    assert _count(overlay, c, rules["from-lbn"] + ["from-lbn"]) == 0


def test_geneve_on_the_wire(overlay: Overlay) -> None:
    """Tenant g's frames reach the LB node as Geneve and are re-encapsulated
    as Geneve to its backend: every frame the client's VXLAN device sent is
    counted by the Geneve service (VNI 3000 has no VXLAN service, so a frame
    that stayed VXLAN would be passed, not counted), and no other service
    moved. (The client's OUTPUT chain sees the frames before tc turns them
    into Geneve: port 4789 there.)"""
    c = overlay.ns["client-g"]
    overlay.lab.run(c, ["iptables", "-w", "-I", "OUTPUT", "-d", LB_VTEP, "-p", "udp", "--dport", "4789",
                        "-m", "comment", "--comment", "geneve-to-lbn"])  # fmt: skip
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        before = {k: v.packets for k, v in read_stats(dp).services.items()}
    assert _connect(overlay, "g", 8) == ["backend-g"] * 24
    with Dataplane.open(overlay.pin) as dp:  # type: ignore[arg-type]
        after = {k: v.packets for k, v in read_stats(dp).services.items()}
    (key,) = [k for k in after if k.seg_type.name == "GENEVE"]
    out = overlay.lab.output(c, ["iptables", "-w", "-L", "OUTPUT", "-v", "-x", "-n"])
    sent = next(int(line.split()[0]) for line in out.splitlines() if "geneve-to-lbn" in line)
    assert sent >= 8 * 5 and after[key] - before.get(key, 0) == sent
    assert all(after[k] == before.get(k, 0) for k in after if k != key)
