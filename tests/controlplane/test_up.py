"""`xdsr up`: etcd, the API server and the operator from one command."""

from __future__ import annotations

import shutil
import signal
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
         "--etcd-port", str(etcd_port)],
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


def test_version() -> None:
    from xdsr import __version__

    r = subprocess.run([sys.executable, "-m", "xdsr.cli", "--version"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout.strip()) == (0, f"xdsr {__version__}")
