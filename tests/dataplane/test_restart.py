"""Forwarding does not depend on the process that configured it.

The process that applied the state is killed (SIGKILL) while TCP
connections run: none breaks. A new process adopts the pinned maps and
changes them, and the program is replaced under live traffic, still without
breaking a connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import needs_root, private_pin_dir
from xdsr.demo.fabric_state import dataplane_config
from xdsr.lab import FabricSpec, TenantSpec, build_fabric, wait_until

pytestmark = needs_root

XDSR = [sys.executable, "-m", "xdsr.cli"]


def xdsr(*args: str) -> str:
    proc = subprocess.run([*XDSR, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"xdsr {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def forwarded(pin: Path) -> int:
    return int(json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin)))["reasons"]["forwarded"]["packets"])


def show(pin: Path) -> dict[str, object]:
    return json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin)))


def test_restart_of_the_controlling_process(tmp_path: Path) -> None:
    spec = FabricSpec(n_lbns=1, prefix="xdp2r", tenants=(TenantSpec(name="t", n_backends=4),))
    with build_fabric(spec) as fab, private_pin_dir() as pin:
        ns, ifname, _ = fab.lbn_trunk(0)
        xdsr("dp", "attach", ifname, "--netns", ns, "--pin-dir", str(pin))
        cfg = tmp_path / "services.yaml"
        state = dataplane_config(fab)
        cfg.write_text(yaml.safe_dump(state))

        controller = subprocess.Popen(
            [*XDSR, "dp", "apply", str(cfg), "--pin-dir", str(pin), "--watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: len(show(pin)["services"]) == 2, timeout=20, what="the controller applied")  # type: ignore[arg-type]
            session = fab.tcp_session("t", conns=32, interval_ms=50)
            try:
                assert forwarded(pin) > 0
                controller.kill()
                controller.wait(timeout=10)

                # Traffic keeps flowing with nobody in control: at least ten
                # more requests per connection go through.
                base = forwarded(pin)
                wait_until(lambda: forwarded(pin) > base + 32 * 10, timeout=20, what="traffic after the kill")

                # A new process adopts the maps and changes them: it drains a
                # backend of the UDP service and leaves the TCP one alone.
                tables = {s["protocol"]: s["table_offset"] for s in show(pin)["services"]}  # type: ignore[index]
                udp = next(s for s in state["services"] if s["protocol"] == "udp")
                drained = udp["backends"][0]["mac"]
                udp["backends"][0]["weight"] = 0
                cfg.write_text(yaml.safe_dump(state))
                out = xdsr("dp", "apply", str(cfg), "--pin-dir", str(pin))
                assert "0 created, 1 updated, 1 unchanged, 0 removed" in out
                now = {s["protocol"]: s["table_offset"] for s in show(pin)["services"]}  # type: ignore[index]
                assert now["tcp"] == tables["tcp"] and now["udp"] != tables["udp"]
                replies = fab.udp_client("t", flows=100)
                assert not replies.unanswered
                names = {b.name for b in fab.tenant("t").backends if b.mac != drained}
                assert set(replies.by_backend()) == names

                # Upgrading the program under live traffic: a new copy is
                # swapped in atomically on the interface.
                before = show(pin)["attachments"][0]["prog_id"]  # type: ignore[index]
                xdsr("dp", "attach", ifname, "--netns", ns, "--pin-dir", str(pin))
                assert show(pin)["attachments"][0]["prog_id"] != before  # type: ignore[index]
                base = forwarded(pin)
                wait_until(lambda: forwarded(pin) > base + 32 * 5, timeout=20, what="traffic after the upgrade")
            finally:
                result = session.stop()
            assert not result.broken, result.broken[:3]
            assert not result.switched
            assert all(len(c.replies) >= 20 for c in result.connections)
        finally:
            if controller.poll() is None:
                controller.kill()
            xdsr("dp", "detach", ifname, "--netns", ns, "--pin-dir", str(pin))
