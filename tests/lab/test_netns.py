"""The lab primitives: lifecycle and teardown, processes, access ports, XDP.

Every lab here is checked for leftovers (namespaces, bpffs directory,
registry record) by the `new_lab` fixture or by the test itself.
"""

from __future__ import annotations

import json
import select
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from xdsr.lab import Lab, LabError, cleanup_stale, wait_until
from xdsr.lab.traffic import start_echo

from .conftest import PREFIX, leftovers, needs_root, netns_names, pid_alive

pytestmark = needs_root

# -- lifecycle ------------------------------------------------------------------------


def test_close_removes_namespaces_processes_and_pins() -> None:
    lab = Lab(PREFIX)
    a, b = lab.add_netns("a"), lab.add_netns("b")
    assert {a, b} <= netns_names()
    lab.add_veth(a, "x", b, "y")
    proc = lab.popen(a, ["sleep", "300"])
    pin = lab.bpffs_dir() / "m"
    subprocess.run(
        ["bpftool", "map", "create", str(pin), "type", "array", "key", "4", "value", "4", "entries", "1", "name", "m"],
        check=True,
    )
    assert pin.exists()

    lab.close()
    lab.close()  # a second close is a no-op

    assert not {a, b} & netns_names()
    assert not pid_alive(proc.pid)
    assert leftovers(lab.name) == []
    with pytest.raises(LabError, match="closed"):
        lab.add_netns("c")


def test_teardown_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(PREFIX) as lab:
        ns = lab.add_netns("a")
        proc = lab.popen(ns, ["sleep", "300"])
        raise RuntimeError("boom")
    assert ns not in netns_names()
    assert not pid_alive(proc.pid)
    assert leftovers(lab.name) == []


def test_processes_that_escaped_tracking_are_killed(new_lab: Callable[[], Lab]) -> None:
    lab = new_lab()
    ns = lab.add_netns("a")
    # A daemon in its own session, started by a command that has exited:
    # only the namespace sweep at close can find it.
    out = lab.output(ns, ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null & echo $!"])
    pid = int(out.strip())
    assert pid_alive(pid)
    lab.close()
    wait_until(lambda: not pid_alive(pid), timeout=2, what=f"pid {pid} gone")


_SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, time
    from xdsr.lab import Lab
    lab = Lab("xt")
    lab.install_signal_handlers()
    ns = lab.add_netns("a")
    proc = lab.popen(ns, ["sleep", "300"])
    print(json.dumps({"lab": lab.name, "ns": ns, "pid": proc.pid}), flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_tears_the_lab_down(sig: signal.Signals) -> None:
    p = subprocess.Popen([sys.executable, "-c", _SIGNAL_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 15)
        assert ready, "the lab script did not start"
        info = json.loads(p.stdout.readline())
        assert info["ns"] in netns_names()
        p.send_signal(sig)
        rc = p.wait(10)
    finally:
        p.kill()
        p.wait()
    # SIGTERM -> SystemExit(143); SIGINT -> an uncaught KeyboardInterrupt,
    # which Python turns into death by SIGINT.
    assert rc == (143 if sig == signal.SIGTERM else -signal.SIGINT)
    assert info["ns"] not in netns_names()
    assert not pid_alive(info["pid"])
    assert leftovers(info["lab"]) == []


_KILLED_SCRIPT = textwrap.dedent(
    """
    import json, os, signal
    from xdsr.lab import Lab
    lab = Lab("xt")
    ns = lab.add_netns("a")
    lab.bpffs_dir()
    print(json.dumps({"lab": lab.name, "ns": ns}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_cleanup_stale_removes_what_a_killed_owner_left() -> None:
    p = subprocess.run([sys.executable, "-c", _KILLED_SCRIPT], capture_output=True, text=True, timeout=30)
    assert p.returncode == -signal.SIGKILL
    info = json.loads(p.stdout)
    assert info["ns"] in netns_names()
    assert info["ns"] in cleanup_stale(dry_run=True)
    assert info["ns"] in cleanup_stale()
    assert leftovers(info["lab"]) == []


def test_namespace_names_are_unique_per_lab(new_lab: Callable[[], Lab]) -> None:
    a, b = new_lab(), new_lab()
    assert a.name != b.name
    assert a.add_netns("sw") != b.add_netns("sw")
    with pytest.raises(LabError, match="exists"):
        a.add_netns("sw")


# -- veths, access ports, XDP ---------------------------------------------------------


def test_veths_keep_vlan_tags_in_band_and_checksums_full(new_lab: Callable[[], Lab]) -> None:
    lab = new_lab()
    a, b = lab.add_netns("a"), lab.add_netns("b")
    veth = lab.add_veth(a, "x", b, "y", mac_a="02:00:00:00:0a:01", mac_b="02:00:00:00:0a:02")
    assert (veth.a.mac, veth.b.mac) == ("02:00:00:00:0a:01", "02:00:00:00:0a:02")
    for end in (veth.a, veth.b):
        feats = lab.offloads(end.netns, end.ifname)
        assert not feats["rx-vlan-offload"]
        assert not feats["tx-vlan-offload"]
        assert not feats["tx-checksumming"]


def _udp_frame(dst_mac: str, src_mac: str, vid: int | None, src_ip: str, dst_ip: str, dport: int) -> bytes:
    """Ethernet (+ 802.1Q tag) + IPv4 + UDP, built by hand: a raw frame is
    how a foreign VLAN's traffic reaches an access port."""
    payload = b"probe\n"
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
            bytes(int(x) for x in src_ip.split(".")), bytes(int(x) for x in dst_ip.split(".")),
        )
    )  # fmt: skip
    csum = sum(struct.unpack("!10H", bytes(ip)))
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = (csum & 0xFFFF) + (csum >> 16)
    ip[10:12] = struct.pack("!H", ~csum & 0xFFFF)
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    tag = struct.pack("!HH", 0x8100, vid) if vid is not None else b""
    return eth + tag + struct.pack("!H", 0x0800) + bytes(ip) + udp


_SEND_RAW = "import socket,sys; s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((sys.argv[1],0)); [s.send(bytes.fromhex(h)) for h in sys.argv[2:]]"  # noqa: E501


def test_access_port_takes_its_vlan_only(new_lab: Callable[[], Lab]) -> None:
    """A host on VLAN 100 behind the bridge receives frames tagged 100 (tag
    removed), never frames of VLAN 200 nor untagged ones; what it sends
    leaves tagged 100."""
    lab = new_lab()
    sw, host, trunk = lab.add_netns("sw", ipv6=False), lab.add_netns("h", ipv6=False), lab.add_netns("t", ipv6=False)
    lab.add_bridge(sw)
    host_mac, trunk_mac = "02:00:00:00:01:01", "02:00:00:00:01:02"
    for ns, port, mac in ((host, "ph", host_mac), (trunk, "pt", trunk_mac)):
        lab.add_veth(sw, port, ns, "eth0", mac_b=mac)
        lab.enslave(sw, port, "br0")
    lab.add_access_port(host, "eth0", 100)
    lab.add_address(host, "eth0", "10.0.0.1/24")
    lab.attach_xdp(trunk, "eth0", "xdp_census")
    echo = start_echo(lab, host, "h", tcp_port=None, udp_port=7000)

    n = 5
    frames = [
        _udp_frame(host_mac, trunk_mac, vid, "10.0.0.99", "10.0.0.1", 7000).hex()
        for vid in [100] * n + [200] * n + [None] * n
    ]
    lab.run(trunk, [sys.executable, "-c", _SEND_RAW, "eth0", *frames])

    counters = wait_until(
        lambda: (c := lab.access_port_counters(host, "eth0"))["ingress_pass"] >= n and c,
        timeout=3,
        what="tagged frames accepted",
    )
    assert counters["ingress_pass"] == n
    assert counters["ingress_other_vid"] == n
    assert counters["ingress_untagged"] == n
    assert counters["ingress_bad"] == 0
    stats = echo.stop()
    assert stats is not None and stats["udp_datagrams"] == n  # only VLAN 100 reached the socket

    # The host answered the n datagrams; to do so it asked for 10.0.0.99's
    # MAC: that broadcast reached the trunk tagged with VLAN 100.
    census = lab.xdp_census(trunk, "eth0")
    assert census.get(("ff:ff:ff:ff:ff:ff", 100, 0x0806), 0) >= 1
    assert all(key.vid == 100 for key in census)
    assert lab.access_port_counters(host, "eth0")["egress_tagged"] >= 1

    # Moved to VLAN 200 (programs replaced in place, fresh counters).
    lab.add_access_port(host, "eth0", 200)
    lab.run(trunk, [sys.executable, "-c", _SEND_RAW, "eth0", *frames])
    counters = wait_until(lambda: (c := lab.access_port_counters(host, "eth0"))["ingress_pass"] >= n and c, timeout=3)
    assert (counters["ingress_pass"], counters["ingress_other_vid"]) == (n, n)


def test_xdp_pass_attaches_and_detaches(new_lab: Callable[[], Lab]) -> None:
    lab = new_lab()
    a, b = lab.add_netns("a"), lab.add_netns("b")
    lab.add_veth(a, "x", b, "y")
    assert lab.xdp_prog_id(b, "y") is None
    prog_id = lab.attach_xdp(b, "y", "xdp_pass")
    assert prog_id > 0
    assert "prog/xdp" in lab.output(b, ["ip", "-d", "link", "show", "dev", "y"])
    info = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert info["type"] == "xdp" and info["name"] == "xdp_pass"
    lab.detach_xdp(b, "y")
    assert lab.xdp_prog_id(b, "y") is None
