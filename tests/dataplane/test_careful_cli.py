"""`xdsr dp …` run carelessly: every mistake gets a clear error, a failed
command leaves nothing behind, and nothing replaces tables another process
owns. Through the installed entry point, on a veth pair of its own."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_root
from xdsr.dataplane.loader import MODES, ensure_bpffs, remove_pins, xdp_prog_id
from xdsr.dataplane.netns import link
from xdsr.dataplane.state import lock_path
from xdsr.lab import Lab, wait_until

pytestmark = needs_root

XDSR = [sys.executable, "-m", "xdsr.cli"]
TRUNK = "trunk0"
MAC = "02:00:00:00:00:01"


def xdsr(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # one line per message
    proc = subprocess.run([*XDSR, *args], capture_output=True, text=True, timeout=60, input=stdin, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"xdsr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, str]]:
    with Lab("xcli") as lab:
        a, b = lab.add_netns("lbn"), lab.add_netns("peer")
        lab.add_veth(a, TRUNK, b, "p0")
        yield lab, a


@pytest.fixture
def pin() -> Iterator[Path]:
    """A pin directory that does not exist yet: commands must make (and, on
    failure, not leave) it."""
    path = Path(f"/sys/fs/bpf/xdsr-test-{uuid.uuid4().hex[:10]}")
    ensure_bpffs(path)
    try:
        yield path
    finally:
        remove_pins(path)


def _services(n: int) -> dict[str, object]:
    return {
        "services": [
            {
                "vip": f"203.0.113.{i + 1}",
                "port": 80,
                "protocol": "tcp",
                "segment": {"type": "vlan", "id": 10},
                "backends": [{"mac": "02:00:00:00:aa:01", "vlan": 100}],
            }
            for i in range(n)
        ]
    }


def _vips(pin: Path) -> list[str]:
    return [s["vip"] for s in json.loads(xdsr("dp", "show", "--json", "--pin-dir", str(pin)).stdout)["services"]]


@contextlib.contextmanager
def attached(pin: Path, ns: str, mode: str = "native") -> Iterator[None]:
    xdsr("dp", "attach", TRUNK, "--netns", ns, "--pin-dir", str(pin), "--mode", mode, "--max-services", "16")
    try:
        yield
    finally:
        xdsr("dp", "detach", TRUNK, "--netns", ns, "--pin-dir", str(pin), check=False)


def test_detach_removes_a_generic_program_and_is_idempotent(lab: tuple[Lab, str], pin: Path) -> None:
    _, ns = lab
    ifindex = link(TRUNK, ns).index
    xdsr("dp", "attach", TRUNK, "--netns", ns, "--pin-dir", str(pin), "--mode", "generic", "--max-services", "16")
    assert xdp_prog_id(ifindex, netns=ns, mode="generic") != 0
    out = xdsr("dp", "detach", TRUNK, "--netns", ns, "--pin-dir", str(pin)).stdout
    assert "detached xdsr (generic)" in out
    assert xdp_prog_id(ifindex, netns=ns) == 0
    assert all(xdp_prog_id(ifindex, netns=ns, mode=m) == 0 for m in MODES)
    again = xdsr("dp", "detach", TRUNK, "--netns", ns, "--pin-dir", str(pin))
    assert "nothing to detach" in again.stdout
    xdsr("dp", "purge", "--pin-dir", str(pin))
    assert not pin.exists()
    # The next attach (as the next agent's) works: nothing is left running.
    with attached(pin, ns):
        assert xdp_prog_id(ifindex, netns=ns, mode="native") != 0
    assert xdp_prog_id(ifindex, netns=ns) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "sctp"], "'sctp' is not one of"),
        (["--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
        (["--vip", "notanip"], "'notanip' is not a valid IPv4 or IPv6 address"),
        (["--src", "2001:db8::1"], "are of different families"),
        (["--vlan", "5000"], "Invalid value for '--vlan': Input should be less than or equal to 4094"),
    ],
)
def test_probe_refuses_what_no_packet_can_be(lab: tuple[Lab, str], pin: Path, args: list[str], message: str) -> None:
    _, ns = lab
    base = {"--vip": "203.0.113.1", "--port": "80"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    cmd = ["dp", "probe", TRUNK, "--netns", ns, "--pin-dir", str(pin)]
    for flag, value in base.items():
        cmd += [flag, value]
    proc = xdsr(*cmd, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_probes_are_judged_but_never_counted(lab: tuple[Lab, str], pin: Path, tmp_path: Path) -> None:
    _, ns = lab
    with attached(pin, ns):
        file = tmp_path / "s.yaml"
        file.write_text(yaml.safe_dump(_services(1)))
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin))
        probe = ["dp", "probe", TRUNK, "--netns", ns, "--pin-dir", str(pin), "--vip", "203.0.113.1", "--port", "80"]
        for proto in ("TCP", "tcp"):
            out = xdsr(*probe, "--protocol", proto, "--vlan", "10").stdout
            assert "XDP_TX: to backend 02:00:00:00:aa:01 on VLAN 100" in out
        # UDP has no service: passed to the stack, so not probed as TCP.
        assert "XDP_PASS" in xdsr(*probe, "--protocol", "Udp", "--vlan", "10").stdout
        stats = json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin)).stdout)
        # (the peer's own IPv6 chatter counts as not_for_us: real frames)
        assert stats["reasons"]["forwarded"]["packets"] == 0, stats
        assert stats["reasons"]["no_service"]["packets"] == 0, stats
        assert [s["packets"] for s in stats["services"]] == [0]


def test_apply_needs_an_explicit_empty_state_and_names_the_file(
    lab: tuple[Lab, str], pin: Path, tmp_path: Path
) -> None:
    _, ns = lab
    file = tmp_path / "state.yaml"
    file.write_text(yaml.safe_dump(_services(2)))
    proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin), check=False)
    assert proc.returncode == 1 and "nothing is attached yet" in proc.stderr
    assert not pin.exists()
    with attached(pin, ns):
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin))
        for text in ("", "# truncated\n", "services:\n"):
            file.write_text(text)
            proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin), check=False)
            assert proc.returncode == 2 and "services: []" in proc.stderr, proc.stderr
            assert _vips(pin) == ["203.0.113.1", "203.0.113.2"]
        file.write_text("services:\n  - vip: 203.0.113.1\n   port: 80\n")
        proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin), check=False)
        assert proc.returncode == 2 and f'in "{file}", line' in proc.stderr, proc.stderr

        out = xdsr("dp", "apply", "-", "--pin-dir", str(pin), stdin=yaml.safe_dump(_services(1))).stdout
        assert "1 unchanged, 1 removed" in out
        assert _vips(pin) == ["203.0.113.1"]
        file.write_text("")
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin), "--allow-empty")
        assert _vips(pin) == []
        file.write_text("services: []\n")
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin))
    # No lock file stays behind.
    assert not os.path.exists(lock_path(pin))


def test_failed_attaches_leave_nothing_behind(lab: tuple[Lab, str], pin: Path) -> None:
    _, ns = lab
    proc = xdsr("dp", "attach", "no-such-if0", "--pin-dir", str(pin), check=False)
    assert proc.returncode == 1 and "no interface 'no-such-if0'" in proc.stderr
    assert not pin.exists()
    proc = xdsr("dp", "attach", TRUNK, "--netns", ns, "--pin-dir", str(pin), "--mode", "turbo", check=False)
    assert proc.returncode == 1 and "unknown XDP mode 'turbo'" in proc.stderr
    assert not pin.exists()
    # The interface refuses (loopback has no native XDP): the maps made for
    # it are removed again. Its MTU is brought under the jumbo-frame limit
    # first, or attach refuses before making anything (test_jumbo.py).
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "mtu", "1500"], check=True)
    proc = xdsr("dp", "attach", "lo", "--netns", ns, "--pin-dir", str(pin), "--max-services", "16", check=False)
    assert proc.returncode == 1 and "cannot attach XDP" in proc.stderr, proc.stderr
    assert not pin.exists()
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *XDSR,
            "dp",
            "attach",
            TRUNK,
            "--pin-dir",
            str(pin),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not pin.exists()


def test_a_second_owner_is_refused(lab: tuple[Lab, str], pin: Path, tmp_path: Path) -> None:
    _, ns = lab
    file = tmp_path / "state.yaml"
    with attached(pin, ns):
        file.write_text(yaml.safe_dump(_services(2)))
        xdsr("dp", "apply", str(file), "--pin-dir", str(pin))
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from xdsr.dataplane.owner import acquire; "
                f"acquire({str(pin)!r}, 'test'); print('owned', flush=True); time.sleep(120)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "owned"
            file.write_text(yaml.safe_dump(_services(1)))
            proc = xdsr("dp", "apply", str(file), "--pin-dir", str(pin), check=False)
            assert proc.returncode == 1
            assert f"owned by process {holder.pid}" in proc.stderr, proc.stderr
            assert _vips(pin) == ["203.0.113.1", "203.0.113.2"]
        finally:
            holder.kill()
            holder.wait()
        wait_until(lambda: xdsr("dp", "apply", str(file), "--pin-dir", str(pin), check=False).returncode == 0, 10)
        assert _vips(pin) == ["203.0.113.1"]
