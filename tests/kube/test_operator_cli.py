"""`xdsr operator --store kubernetes:KUBECONFIG --leader-elect` as the Deployment runs it:
of two replicas one holds the Lease xdsr-operator; both answer their liveness probe;
when the leader stops, the other takes over."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.kube.fakeapi import fake_kube_api
from xdsr.lab import wait_until
from xdsr.local.process import Child, free_port


def test_two_operator_replicas_one_leader_then_the_other(tmp_path: Path) -> None:
    token = tmp_path / "agent-token"
    token.write_text("t0ken")
    with fake_kube_api(bookmark_interval=0.5) as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        replicas = []
        try:
            for i in range(2):
                port = free_port()
                argv = [sys.executable, "-m", "xdsr.cli", "operator", "--store", f"kubernetes:{kubeconfig}",
                        "--token-file", str(token), "--leader-elect", "--insecure-http", "--health-listen",
                        f"127.0.0.1:{port}"]  # fmt: skip
                child = Child(f"operator {i}", argv, log_path=tmp_path / f"operator-{i}.log").start()
                replicas.append((child, f"http://127.0.0.1:{port}/healthz"))
                if i == 0:  # the first stands alone long enough to lead
                    wait_until(lambda: _holder(api) is not None, timeout=30,
                               what="a leader")  # fmt: skip
            for _, url in replicas:
                wait_until(lambda u=url: httpx.get(u, timeout=1).status_code == 200, timeout=30,
                           what="healthz", ignore=(httpx.TransportError,))  # fmt: skip
            first = _holder(api)
            assert first is not None
            leader = next(c for c in (r[0] for r in replicas) if str(c.pid) in first)
            leader.stop()  # a clean exit hands the Lease over at once
            wait_until(lambda: _holder(api) not in (None, first), timeout=30, what="the other replica leads")
        finally:
            for child, _ in replicas:
                child.stop()


def _holder(api: object) -> str | None:
    lease = api.state.objects.get(("coordination.k8s.io/leases", "xdsr", "xdsr-operator"))  # type: ignore[attr-defined]
    return (lease or {}).get("spec", {}).get("holderIdentity") or None
