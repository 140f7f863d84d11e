"""xdsr as users install it: a license, a changelog, a wheel that carries its
BPF objects, dependencies an LB node needs and no more, systemd units, and an
agent configuration file equivalent to its flags."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_root

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_and_changelog() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {PYPROJECT['project']['version']}" in changelog


def test_an_lb_node_loads_neither_matplotlib_nor_scapy() -> None:
    base = " ".join(PYPROJECT["project"]["dependencies"])
    assert "matplotlib" not in base and "scapy" not in base
    code = (
        "import importlib, pkgutil, sys\n"
        "import xdsr.agent, xdsr.dataplane, xdsr.cli.main\n"
        "for pkg in (xdsr.agent, xdsr.dataplane):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted({k.split('.')[0] for k in sys.modules} & {'matplotlib', 'scapy'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_octavia_extra_has_lower_bounds_and_the_test_pins_live_apart() -> None:
    extra = PYPROJECT["project"]["optional-dependencies"]["octavia"]
    names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in extra}
    assert names == {"octavia-lib", "oslo.config", "httpx"}
    assert all(">=" in r and "==" not in r for r in extra)
    pins = (ROOT / "constraints" / "octavia-test.txt").read_text()
    assert "octavia==19.0.0" in pins and "SQLAlchemy==" in pins
    assert "constraints/octavia-test.txt" in (ROOT / "scripts" / "install.sh").read_text()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert {u.name for u in units} == {"xdsr-agent.service", "xdsr-apiserver.service", "xdsr-operator.service"}
    xdsr = Path(sys.executable).with_name("xdsr")
    for unit in units:
        # verify checks that ExecStart's program exists: point it at this one.
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/local/bin/xdsr", str(xdsr)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    agent = (ROOT / "deploy" / "systemd" / "xdsr-agent.service").read_text()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", agent, re.M)
    assert caps is not None
    assert set(caps.group(1).split()) == {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_NET_RAW", "CAP_SYS_RESOURCE"}
    assert "--config /etc/xdsr/agent.yaml" in agent


def test_the_example_agent_file_holds_the_agents_options() -> None:
    from xdsr.agent.settings import AgentSettings, load

    example = ROOT / "deploy" / "systemd" / "agent.yaml.example"
    s = load({}, example, environ={})
    assert s.iface == "eth1" and s.health_sources == ("100=10.1.0.250",)
    assert set(yaml.safe_load(example.read_text())) <= set(AgentSettings.model_fields)


@pytest.mark.slow
@needs_root
def test_a_wheel_installed_in_a_fresh_venv_finds_its_bpf_objects(tmp_path: Path) -> None:
    """`pip wheel .` builds the BPF objects into the package; installed
    outside the source tree, xdsr loads its program from there."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("xdsr-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    # The dependencies come from this environment's site-packages, appended
    # after the fresh one's (a .pth file processes no .pth files in turn, so
    # the editable xdsr of this environment stays out of sight).
    fresh_site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(fresh_site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pin = f"/sys/fs/bpf/xdsr-test-{uuid.uuid4().hex[:10]}"
    code = (
        "import sys, xdsr, xdsr.paths\n"
        "from xdsr.dataplane.loader import Dataplane, remove_pins\n"
        f"assert xdsr.__file__.startswith({str(venv)!r}), xdsr.__file__\n"
        "obj = xdsr.paths.bpf_object('xdsr_lb')\n"
        f"assert str(obj).startswith({str(venv)!r}), obj\n"
        f"pin = {pin!r}\n"
        "try:\n"
        "    with Dataplane.create_or_open(pin, max_services=16) as dp:\n"
        "        dp.load_program('02:00:00:00:00:01').close()\n"
        "        print('loaded', obj)\n"
        "finally:\n"
        "    remove_pins(pin)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XDSR_BPF_DIR", "PYTHONPATH")}
    proc = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("loaded ")
