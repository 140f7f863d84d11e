"""`xdsr dp …` as an operator runs it: through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import needs_root

pytestmark = needs_root

XDSR = [sys.executable, "-m", "xdsr.cli"]


def xdsr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*XDSR, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"xdsr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _cfg(n: int) -> dict[str, object]:
    return {
        "services": [
            {
                "vip": f"203.0.113.{i + 1}",
                "port": 443,
                "protocol": "tcp",
                "segment": {"type": "vlan", "id": 10},
                "backends": [{"mac": f"02:00:00:00:{i:02x}:01", "vlan": 100, "weight": 2}],
            }
            for i in range(n)
        ]
    }


def test_apply_show_stats_and_an_invalid_file(tmp_path: Path, pin_dir: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_cfg(3)))
    out = xdsr("dp", "apply", str(good), "--pin-dir", str(pin_dir), "--create").stdout
    assert "3 created" in out
    assert "3 unchanged" in xdsr("dp", "apply", str(good), "--pin-dir", str(pin_dir), "--create").stdout

    shown = json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin_dir)).stdout)
    assert [s["vip"] for s in shown["services"]] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    assert shown["services"][0]["backends"] == [{"mac": "02:00:00:00:00:01", "vlan": 100, "weight": 2}]
    assert shown["max_services"] == 4096

    bad = tmp_path / "bad.json"
    cfg = _cfg(1)
    cfg["services"][0]["backends"][0]["mac"] = "not-a-mac"  # type: ignore[index]
    bad.write_text(json.dumps(cfg))
    proc = xdsr("dp", "apply", str(bad), "--pin-dir", str(pin_dir), "--create", check=False)
    assert proc.returncode == 2
    assert "services[0].backends[0].mac" in proc.stderr and "nothing was changed" in proc.stderr
    assert json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin_dir)).stdout) == shown

    stats = json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin_dir)).stdout)
    assert stats["reasons"]["forwarded"] == {"verdict": "tx", "packets": 0, "bytes": 0}
    assert len(stats["services"]) == 3


def test_apply_warns_when_a_table_is_resized(tmp_path: Path, pin_dir: Path) -> None:
    """Without table_size the size follows the backend count, and a table of
    another size moves nearly every flow: apply says so."""
    file = tmp_path / "state.yaml"
    cfg = _cfg(1)
    file.write_text(yaml.safe_dump(cfg))
    assert "warning" not in xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--create").stdout
    cfg["services"][0]["backends"].append({"mac": "02:00:00:00:00:02", "vlan": 100})  # type: ignore[index]
    file.write_text(yaml.safe_dump(cfg))
    out = xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--create").stdout
    assert "warning: 203.0.113.1:443/tcp vlan 10: table resized 101 -> 211 slots" in out
    cfg["services"][0]["table_size"] = 211  # type: ignore[index]
    cfg["services"][0]["backends"].append({"mac": "02:00:00:00:00:03", "vlan": 100})  # type: ignore[index]
    file.write_text(yaml.safe_dump(cfg))
    out = xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--create").stdout
    assert "1 updated" in out and "warning" not in out


def test_commands_explain_a_missing_data_plane(pin_dir: Path) -> None:
    proc = xdsr("dp", "show", "--pin-dir", str(pin_dir), check=False)
    assert proc.returncode == 1
    assert "no xdsr data plane is pinned" in proc.stderr
    proc = xdsr("dp", "attach", "no-such-if0", "--pin-dir", str(pin_dir), check=False)
    assert proc.returncode == 1
    assert "no interface 'no-such-if0'" in proc.stderr


def test_apply_takes_the_agents_schema_and_refuses_what_an_agent_refuses(tmp_path: Path, pin_dir: Path) -> None:
    """The file is the operator's service schema: a member given by address
    is taken (as an agent takes it) but, resolved by nobody here, left out
    with a warning; a loopback VIP is refused (as an agent refuses it)."""
    cfg = _cfg(1)
    cfg["services"][0]["id"] = "web"  # type: ignore[index]
    cfg["services"][0]["backends"].append({"id": "m2", "address": "10.1.0.12", "vlan": 100})  # type: ignore[index]
    file = tmp_path / "state.yaml"
    file.write_text(yaml.safe_dump(cfg))
    proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--create")
    assert "1 created" in proc.stdout
    assert "web: no MAC given for m2; left out of the table" in proc.stderr
    shown = json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin_dir)).stdout)
    assert shown["services"][0]["backends"] == [{"mac": "02:00:00:00:00:01", "vlan": 100, "weight": 2}]

    cfg["services"][0]["vip"] = "127.0.0.1"  # type: ignore[index]
    file.write_text(yaml.safe_dump(cfg))
    proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--create", check=False)
    assert proc.returncode == 2 and "services[0].vip" in proc.stderr and "cannot be a VIP" in proc.stderr
    assert json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin_dir)).stdout) == shown


def test_overlay_attach_apply_show_and_probe(tmp_path: Path, pin_dir: Path) -> None:
    """A VXLAN service through the commands: attached with this node's
    endpoint, applied with the underlay next hop, shown with its tunnel
    backend, and probed with a VXLAN frame: the probe names the backend's
    inner MAC, VNI and endpoint."""
    import uuid

    ns = f"xdsr-ovl-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", ns, "link"]
        subprocess.run([*ip, "add", "trunk0", "type", "veth", "peer", "name", "peer0"], check=True)
        subprocess.run([*ip, "set", "trunk0", "up"], check=True)
        subprocess.run([*ip, "set", "peer0", "up"], check=True)
        cfg = {
            "services": [
                {
                    "vip": "203.0.113.1",
                    "port": 443,
                    "protocol": "tcp",
                    "segment": {"type": "vxlan", "id": 5000},
                    "backends": [{"mac": "02:00:00:00:00:01", "vni": 6000, "vtep": "192.0.2.21", "id": "m1"}],
                }
            ]
        }
        file = tmp_path / "state.yaml"
        file.write_text(yaml.safe_dump(cfg))
        xdsr("dp", "attach", "trunk0", "--netns", ns, "--pin-dir", str(pin_dir), "--mode", "generic",
             "--vtep", "192.0.2.1")  # fmt: skip
        proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir))
        assert "no MAC or no --next-hop (towards their tunnel endpoints) given for m1" in proc.stderr
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin_dir), "--next-hop", "02:00:00:00:00:FE")
        shown = json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin_dir)).stdout)
        assert shown["services"][0]["segment"] == {"type": "vxlan", "id": 5000}
        assert shown["services"][0]["backends"] == [
            {
                "mac": "02:00:00:00:00:01",
                "vni": 6000,
                "vtep": "192.0.2.21",
                "next_hop": "02:00:00:00:00:fe",
                "weight": 1,
            }
        ]
        probe = ["dp", "probe", "trunk0", "--netns", ns, "--pin-dir", str(pin_dir), "--vip", "203.0.113.1"]
        out = xdsr(*probe, "--port", "443", "--segment", "vxlan:5000", "--vtep", "192.0.2.1").stdout
        assert "XDP_TX: to backend 02:00:00:00:00:01 on VNI 6000 behind 192.0.2.21" in out
        out = xdsr(*probe, "--port", "443", "--segment", "vxlan:5001", "--vtep", "192.0.2.1").stdout
        assert out.strip() == "XDP_PASS"
        out = xdsr(*probe, "--port", "443", "--segment", "vxlan:5000", "--vtep", "192.0.2.9").stdout
        assert out.strip() == "XDP_PASS"  # another endpoint's
        stats = json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin_dir)).stdout)
        # Probes count nothing: neither as forwarded nor under the (overlay) service.
        assert stats["reasons"]["forwarded"] == {"verdict": "tx", "packets": 0, "bytes": 0}
        assert [s["packets"] for s in stats["services"]] == [0]
        xdsr("dp", "detach", "trunk0", "--netns", ns, "--pin-dir", str(pin_dir))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
