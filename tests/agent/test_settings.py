"""The agent's options: one model, read from flags, a file and the
environment alike (no root needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xdsr.agent.settings import AgentSettings, SettingsError, env_name, flag_name, load

REQUIRED = {"iface": "eth1", "name": "lbn1", "listen": "127.0.0.1:9101", "token_file": "/etc/xdsr/agent-token"}


def test_every_option_is_a_flag_of_xdsr_agent() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xdsr.cli", "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    for name in AgentSettings.model_fields:
        assert f" {flag_name(name)} " in out, name
        assert env_name(name) in out, name


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("iface: eth1\nname: from-file\nlisten: 10.0.0.5:9101\ntoken_file: /t\nlease_ttl: 20\n")
    env = {"XDSR_AGENT_NAME": "from-env", "XDSR_AGENT_HEALTH_SOURCES": "100=10.1.0.250, 200=10.2.0.250"}
    s = load({"listen": "10.0.0.6:9101", "iface": None}, conf, environ=env)
    assert (s.iface, s.name, s.listen, s.lease_ttl) == ("eth1", "from-env", "10.0.0.6:9101", 20)
    assert s.health_sources == ("100=10.1.0.250", "200=10.2.0.250")
    assert s.token_file == Path("/t") and s.pin_dir == Path("/sys/fs/bpf/xdsr")


@pytest.mark.parametrize(
    ("flags", "file", "message"),
    [
        ({}, "", "--iface is required (or `iface:` in the file, or XDSR_AGENT_IFACE)"),
        (REQUIRED, "colour: blue\n", "unknown option 'colour'"),
        ({**REQUIRED, "lease_ttl": 1}, "", "--lease-ttl (from the command line): Input should be greater than"),
        (REQUIRED, "mode: turbo\n", "mode (from "),
        (REQUIRED, "- a list\n", "the top level must be a mapping"),
        (REQUIRED, "iface: [\n", "not valid YAML"),
    ],
)
def test_errors_name_the_option_and_where_it_came_from(
    tmp_path: Path, flags: dict[str, object], file: str, message: str
) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text(file)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(flags, conf, environ={})


def test_the_tunnel_endpoint_from_flags_and_environment() -> None:
    s = load(
        {**REQUIRED, "vtep_address": ("192.0.2.1", "2001:db8:f::1")}, None, environ={"XDSR_AGENT_VXLAN_PORT": "8472"}
    )
    t = s.tunnel
    assert (str(t.vtep4), str(t.vtep6), t.vxlan_port, t.geneve_port) == ("192.0.2.1", "2001:db8:f::1", 8472, 6081)
    assert not load(REQUIRED, None, environ={}).tunnel.enabled
    env = {"XDSR_AGENT_VTEP_ADDRESS": "192.0.2.1,192.0.2.2"}
    with pytest.raises(SettingsError, match="two IPv4 tunnel endpoints"):
        load(REQUIRED, None, environ=env)
    with pytest.raises(SettingsError, match="a tunnel endpoint"):
        load({**REQUIRED, "vtep_address": ("224.0.0.1",)}, None, environ={})
    with pytest.raises(SettingsError, match="share UDP port"):
        load({**REQUIRED, "vtep_address": ("192.0.2.1",), "geneve_port": 4789}, None, environ={})
