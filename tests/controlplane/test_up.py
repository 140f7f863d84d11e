"""`xdsr up`: etcd, the API server and the operator from one command."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from xdsr.lab import wait_until
from xdsr.local.process import free_port


@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd is not installed (Debian package etcd-server)")
def test_up_serves_the_api_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, etcd_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xdsr.cli", "up", "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{api_port}",
         "--etcd-port", str(etcd_port), "--insecure-http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        tokens = tmp_path / "tokens.yaml"
        wait_until(tokens.exists, timeout=20, what="tokens file")
        admin = yaml.safe_load(tokens.read_text())["tokens"][0]["token"]
        assert (tmp_path / "agent-token").stat().st_mode & 0o077 == 0, "secrets are private"
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"X-Auth-Token": admin}, timeout=5)

        def ready() -> bool:
            try:
                return api.get("/v2/lbaas/loadbalancers").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30, what="API up")
        r = api.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {"name": "x", "vip_address": "203.0.113.5"}})
        assert r.status_code == 201, r.text
        # No LB node has registered: the operator says so, and the load
        # balancer is in ERROR with that reason rather than pending forever.
        lb_id = r.json()["loadbalancer"]["id"]
        wait_until(
            lambda: (
                api.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]["provisioning_status"] == "ERROR"
            ),
            timeout=20,
            what="ERROR without LB nodes",
        )
        # One process, one /metrics: the API server's and the operator's.
        assert api.get("/healthz").status_code == 200
        metrics = api.get("/metrics").text
        assert "xdsr_operator_reconcile_duration_seconds_count" in metrics
        assert 'xdsr_loadbalancers{operating_status="OFFLINE",provisioning_status="ERROR"} 1.0' in metrics
        # `xdsr status` shows the load balancer nowhere, and why.
        status = subprocess.run(
            [sys.executable, "-m", "xdsr.cli", "status", "--store", f"http://127.0.0.1:{etcd_port}", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        view = yaml.safe_load(status.stdout)
        assert [(lb["id"], lb["provisioning_status"]) for lb in view["unplaced_loadbalancers"]] == [(lb_id, "ERROR")]
        assert "no group of LB nodes" in (view["unplaced_loadbalancers"][0]["error"] or "")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "xdsr control plane up" in out
    # The admin token is printed, with a command line that works (docs/api.md),
    # and the HTTP client's per-request log is quiet without -v.
    assert f"admin      {admin}" in out
    assert f"--os-auth-type admin_token --os-endpoint http://127.0.0.1:{api_port} --os-token {admin}" in out
    assert "HTTP Request:" not in out, out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{etcd_port}/health", timeout=1)


def _running_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds marker."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd is not installed (Debian package etcd-server)")
@pytest.mark.parametrize("when", ["etcd started", "etcd healthy"])
def test_sigterm_while_starting_leaves_no_etcd(tmp_path: Path, when: str) -> None:
    """SIGTERM after etcd started and before "control plane up": `xdsr up`
    exits and its etcd goes with it."""
    api_port, etcd_port = free_port(), free_port()
    data = str(tmp_path / "etcd" / "member-data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xdsr.cli", "up", "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{api_port}",
         "--etcd-port", str(etcd_port), "--insecure-http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _running_with(data), timeout=30, interval=0.005, what="etcd started")
        if when == "etcd healthy":

            def healthy() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{etcd_port}/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(healthy, timeout=30, interval=0.005, what="etcd healthy")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        left = _running_with(data)
        for pid in left:  # never leave one behind, whatever the outcome
            os.kill(pid, signal.SIGKILL)
    if "xdsr control plane up" in out:
        pytest.skip("the control plane came up before the signal: the window was missed")
    assert not left, f"etcd outlived `xdsr up`:\n{out}"


def test_etcd_for_other_machines_needs_tls(tmp_path: Path) -> None:
    proc = subprocess.run(
        # TLS to the agents, none for etcd, which would listen beyond loopback.
        [sys.executable, "-m", "xdsr.cli", "up", "--state-dir", str(tmp_path), "--etcd-listen", "192.0.2.1",
         "--agent-ca", "x", "--agent-cert", "y", "--agent-key", "z"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--etcd-cert" in proc.stdout + proc.stderr


@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd is not installed (Debian package etcd-server)")
def test_up_serves_etcd_over_tls(tmp_path: Path) -> None:
    from tests.certs import CA

    ca = CA(tmp_path, "xdsr")
    member = ca.issue("etcd-member", server=True, client=True)
    api_port, etcd_port = free_port(), free_port()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xdsr.cli", "up", "--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}",
         "--etcd-port", str(etcd_port), "--etcd-cert", str(member.cert), "--etcd-key", str(member.key),
         "--etcd-client-ca", str(ca.path), "--insecure-http"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        tokens = state / "tokens.yaml"
        wait_until(tokens.exists, timeout=20, what="tokens file")
        admin = yaml.safe_load(tokens.read_text())["tokens"][0]["token"]
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"X-Auth-Token": admin}, timeout=5)

        def ready() -> bool:
            try:
                return api.get("/v2/lbaas/loadbalancers").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30, what="API up on a TLS etcd")
        # etcd itself: https only, and only with a certificate our CA signed.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{etcd_port}/health", timeout=2)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{etcd_port}/v3/kv/range", verify=ssl_context(ca.path), timeout=2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"etcd       https://127.0.0.1:{etcd_port}" in out


def ssl_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _up(tmp_path: Path, etcd_port: int, *prefix: str) -> list[str]:
    return [*prefix, sys.executable, "-m", "xdsr.cli", "up", "--state-dir", str(tmp_path),
            "--listen", f"127.0.0.1:{free_port()}", "--etcd-port", str(etcd_port), "--insecure-http"]  # fmt: skip


@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd is not installed (Debian package etcd-server)")
def test_up_refuses_an_etcd_port_in_use_and_stops_when_its_etcd_dies(tmp_path: Path) -> None:
    from xdsr.local.etcd import EtcdServer

    with EtcdServer() as other:
        proc = subprocess.run(_up(tmp_path / "a", other.port), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"127.0.0.1:{other.port} is in use" in proc.stderr and "Traceback" not in proc.stderr

    state = tmp_path / "b"
    up = subprocess.Popen(
        _up(state, free_port()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert up.stdout is not None and "xdsr control plane up" in up.stdout.readline()
        children = Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()
        (etcd_pid,) = [int(p) for p in children if Path(f"/proc/{p}/comm").read_text().strip() == "etcd"]
        os.kill(etcd_pid, signal.SIGKILL)
        _, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 1
    assert "etcd exited with status" in err and "Traceback" not in err


def test_up_as_a_user_with_the_defaults_says_why_it_cannot(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to run the command as another user")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           sys.executable, "-m", "xdsr.cli", "up", "--insecure-http"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot use the state directory /var/lib/xdsr" in proc.stderr and "Traceback" not in proc.stderr


def test_apiserver_without_its_tokens_file_exits_non_zero(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xdsr.cli", "apiserver", "--tokens-file", str(tmp_path / "missing.yaml"),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr


def test_version() -> None:
    from xdsr import __version__

    r = subprocess.run([sys.executable, "-m", "xdsr.cli", "--version"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout.strip()) == (0, f"xdsr {__version__}")
