"""The agent owns its data plane and keeps it true: a second owner is
refused, drift is found and repaired, the metrics say what the kernel holds,
and a failed start leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.agent.conftest import XDSR, AgentProcess, services_doc
from tests.conftest import needs_root
from xdsr.dataplane.loader import Dataplane, ensure_bpffs, remove_pins
from xdsr.dataplane.state import apply
from xdsr.lab import Fabric, wait_until
from xdsr.local.process import free_port

pytestmark = needs_root


def _agent_cmd(a: AgentProcess, pin: Path, port: int) -> list[str]:
    return [
        *XDSR, "agent", "--iface", a.ifname, "--netns", a.ns, "--name", "second", "--listen", f"127.0.0.1:{port}",
        "--token-file", str(a.token_file), "--pin-dir", str(pin), "--state-dir", str(a.state_dir), *a.transport,
    ]  # fmt: skip


def _drift(pin: Path) -> None:
    """What a careless writer that ignores the owner lock does: empty the tables."""
    with Dataplane.open(pin) as dp:
        apply(dp, [])


def test_a_second_agent_and_dp_apply_are_refused(fab: Fabric, agent: AgentProcess, tmp_path: Path) -> None:
    doc = {"generation": 1, "services": services_doc(fab)}
    assert agent.put(doc).status_code == 200
    before = agent.installed()
    pid = agent.proc.pid if agent.proc is not None else 0

    proc = subprocess.run(_agent_cmd(agent, agent.pin_dir, free_port()), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"owned by process {pid}" in proc.stderr and "Traceback" not in proc.stderr

    file = tmp_path / "empty.yaml"
    file.write_text("services: []\n")
    proc = subprocess.run(
        [*XDSR, "dp", "apply", str(file), "--pin-dir", str(agent.pin_dir)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and f"owned by process {pid}" in proc.stderr, proc.stderr
    assert agent.installed() == before
    assert agent.put(doc).status_code == 200  # the first agent still serves


def test_drift_is_reported_from_the_kernel_and_repaired_on_resync(fab: Fabric, agent_factory: Any) -> None:
    a: AgentProcess = agent_factory(extra=["--verify-interval", "3600"]).start()
    doc = {"generation": 1, "services": services_doc(fab)}
    assert a.put(doc).status_code == 200
    intended = a.installed()
    n = len(intended)
    m = a.metrics()
    assert m[("xdsr_agent_services", ())] == n
    assert m[("xdsr_dataplane_services_max", ())] == 64
    total = m[("xdsr_dataplane_table_memory_bytes", ())]
    assert 0 < m[("xdsr_dataplane_table_memory_free_bytes", ())] < total
    prog = [(lv, v) for (name, lv), v in m.items() if name == "xdsr_dataplane_xdp_program_id"]
    assert len(prog) == 1 and dict(prog[0][0]) == {"iface": a.ifname, "mode": "native"} and prog[0][1] > 0

    _drift(a.pin_dir)
    m = a.metrics()
    assert m[("xdsr_agent_services", ())] == 0  # what the kernel holds, not what the agent meant
    assert m[("xdsr_dataplane_table_memory_free_bytes", ())] == total
    assert not [k for k in m if k[0] == "xdsr_service_packets_total"]
    assert m[("xdsr_dataplane_drift_repairs_total", ())] == 0

    assert a.put(doc).status_code == 200  # the operator's resync: same generation
    assert a.installed() == intended
    assert a.metric("xdsr_dataplane_drift_repairs_total") == 1
    assert a.metric("xdsr_agent_services") == n
    assert "drift: the kernel's tables differ from those of generation=1" in a.log()


def test_drift_is_repaired_between_resyncs(fab: Fabric, agent_factory: Any) -> None:
    a: AgentProcess = agent_factory(extra=["--verify-interval", "0.5"]).start()
    assert a.put({"generation": 3, "services": services_doc(fab)}).status_code == 200
    intended = a.installed()
    _drift(a.pin_dir)
    wait_until(lambda: a.metric("xdsr_dataplane_drift_repairs_total") == 1, 10, what="drift repaired")
    assert a.installed() == intended


def test_a_failed_start_leaves_nothing(fab: Fabric, agent: AgentProcess, tmp_path: Path) -> None:
    pin = Path(f"/sys/fs/bpf/xdsr-test-{uuid.uuid4().hex[:8]}")
    ensure_bpffs(pin)
    try:
        cmd = _agent_cmd(agent, pin, free_port())
        cmd[cmd.index("--iface") + 1] = "no-such-if0"
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "no interface 'no-such-if0'" in proc.stderr, proc.stderr
        assert not pin.exists()
        cmd = _agent_cmd(agent, pin, free_port())
        cmd[cmd.index("--iface") + 1] = "lo"  # loopback: no native XDP, found after the maps are made
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "cannot start the data plane" in proc.stderr, proc.stderr
        assert not pin.exists()
    finally:
        remove_pins(pin)


def test_options_from_a_file_and_the_environment(fab: Fabric, agent_factory: Any, tmp_path: Path) -> None:
    """The same options as flags, from /etc/xdsr/agent.yaml's format and XDSR_AGENT_*."""
    from xdsr.local.process import Child

    a: AgentProcess = agent_factory()
    conf = tmp_path / "agent.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "iface": a.ifname,
                "netns": a.ns,
                "name": "from-file",
                "token_file": str(a.token_file),
                "pin_dir": str(a.pin_dir),
                "state_dir": str(a.state_dir),
                "max_services": 32,
                "insecure_http": True,
            }
        )
    )
    env = {**os.environ, "XDSR_AGENT_LISTEN": f"127.0.0.1:{a.port}", "XDSR_AGENT_NAME": "from-env"}
    child = Child("agent from file", [*XDSR, "agent", "--config", str(conf)], env=env, log_path=tmp_path / "a.log")
    child.start()
    try:
        wait_until(lambda: a.http.get("/healthz").status_code == 200, 20, what="agent up", ignore=(Exception,))
        assert a.http.get("/healthz").json()["name"] == "from-env"  # the environment beats the file
        assert a.metric("xdsr_dataplane_services_max") == 32
    finally:
        child.stop()


def test_the_agent_runs_with_the_capabilities_its_unit_grants(fab: Fabric, agent_factory: Any) -> None:
    """deploy/systemd/xdsr-agent.service's capabilities, and no other: the
    agent starts, applies and forwards. It runs inside the trunk's network
    namespace (nsenter, which keeps /sys/fs/bpf), as the unit runs in the
    host's."""
    import re

    import httpx

    from xdsr.dataplane.netns import in_netns
    from xdsr.local.process import Child

    unit = (Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "xdsr-agent.service").read_text()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M)
    assert caps is not None
    wanted = ",".join("+" + c.removeprefix("CAP_").lower() for c in caps.group(1).split())
    a: AgentProcess = agent_factory()
    cmd = [
        "nsenter", f"--net=/run/netns/{a.ns}",
        "setpriv", "--inh-caps=-all", "--ambient-caps=-all", f"--bounding-set=-all,{wanted}", "--",
        *XDSR, "agent", "--iface", a.ifname, "--name", "capped", "--listen", f"127.0.0.1:{a.port}",
        "--token-file", str(a.token_file), "--pin-dir", str(a.pin_dir), "--state-dir", str(a.state_dir),
        "--max-services", "64", *a.transport,
    ]  # fmt: skip
    # CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_SYS_RESOURCE 24, CAP_PERFMON 38, CAP_BPF 39
    # (as far as this machine grants them: a container may lack SYS_RESOURCE,
    # which kernels since 5.11 do not need for BPF memory)
    mine = re.search(r"^CapBnd:\s*([0-9a-f]+)$", Path("/proc/self/status").read_text(), re.M)
    assert mine is not None
    mask = ((1 << 12) | (1 << 13) | (1 << 24) | (1 << 38) | (1 << 39)) & int(mine.group(1), 16)
    # Twice: the second start replaces the program the first one attached.
    for generation in (1, 2):
        child = Child("capped agent", cmd, log_path=a.workdir / "capped.log").start()
        try:
            with in_netns(a.ns), httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {a.token}"}) as http:
                try:
                    wait_until(
                        lambda: child.poll() is None and http.get("/healthz").status_code == 200,  # noqa: B023
                        20,
                        what="capped agent up",
                        ignore=(httpx.TransportError,),
                    )
                except TimeoutError:
                    raise AssertionError(f"start {generation}: {child.log_tail()}") from None
                status = Path(f"/proc/{child.pid}/status").read_text()  # setpriv execs the agent in place
                assert f"CapEff:\t{mask:016x}" in status, status
                r = http.put("/v1/state", json={"generation": generation, "services": services_doc(fab)})
                assert r.status_code == 200 and r.json()["error"] is None, r.text
            assert fab.tcp_client(0, conns=8, interval_ms=50, duration=0.3).all_ok
        finally:
            child.stop()
        assert child.returncode == 0, child.log_tail()


def test_metrics_pass_promtool(fab: Fabric, agent: AgentProcess) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    assert agent.put({"generation": 1, "services": services_doc(fab)}).status_code == 200
    text = httpx.get(agent.url + "/metrics", timeout=10).text
    assert "process_resident_memory_bytes" in text and "xdsr_dataplane_xdp_program_id" in text
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
