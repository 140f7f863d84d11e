"""The stock OpenStack CLI (`openstack loadbalancer ...`, python-openstackclient
with python-octaviaclient, unchanged) against a whole local deployment on a
lab fabric, with real traffic after every step that should change it; the
same deployment's /metrics, every component's, through promtool; and `xdsr
status` of it.

The command line is the one docs/api.md documents:

    openstack --os-auth-type admin_token --os-endpoint URL --os-token TOKEN loadbalancer ...

The client resolves `--vip-subnet-id` and `--subnet-id` (here by name)
through the Networking API; xdsr answers those lookups from its networks
file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IS_ROOT, needs_root
from tests.controlplane.conftest import Env, until
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import installed
from xdsr.lab import FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.local.cluster import LocalCluster

pytestmark = needs_root

VIP = "203.0.113.30"
OPENSTACK = Path(sys.executable).parent / "openstack"


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root")
    if not OPENSTACK.exists():
        pytest.skip("python-openstackclient is not installed (the `test` extra)")
    tenant = TenantSpec(name="a", n_backends=3, vip=VIP, frontend_vid=10, backend_vid=100)
    subnets = [
        {"id": str(uuid.uuid4()), "name": "front", "cidr": "203.0.113.0/24", "segment": {"type": "vlan", "id": 10}},
        {"id": str(uuid.uuid4()), "name": "back", "cidr": "10.1.0.0/24", "segment": {"type": "vlan", "id": 100}},
    ]
    with (
        build_fabric(FabricSpec(n_lbns=3, prefix="xcli", tenants=(tenant,))) as fab,
        LocalCluster.on_fabric(fab, projects=("a",), subnets=subnets) as cluster,
    ):
        yield Env(fab, cluster)


def openstack(env: Env, *args: str, json_out: bool = True) -> Any:
    """One `openstack` command, as a user types it (the project's token)."""
    cmd = [
        str(OPENSTACK),
        "--os-auth-type", "admin_token",
        "--os-endpoint", env.cluster.api_url,
        "--os-token", env.cluster.tokens.projects["a"],
        *args,
    ]  # fmt: skip
    if json_out:
        cmd += ["-f", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}\n{env.cluster.logs()}"
    return json.loads(r.stdout) if json_out and r.stdout.strip() else r.stdout


def served_by(env: Env) -> set[str]:
    result = env.fab.tcp_client("a", conns=30, interval_ms=50, duration=0.3)
    assert not result.broken, result.broken[:2]
    return set(result.by_backend())


def nothing_installed(env: Env) -> None:
    for name, pin in env.cluster.pin_dirs.items():
        with Dataplane.open(pin) as dp:
            assert installed(dp) == [], f"{name} still holds services"
    assert len(env.fab.tcp_client("a", conns=3, duration=0.2, connect_timeout=1.0).broken) == 3


def build(env: Env, name: str) -> dict[str, str]:
    """LB, listener, pool, three members, a monitor: one command each, each
    waiting until the load balancer is ACTIVE again (as Terraform does)."""
    be = env.fab.tenant("a").backends
    lb = openstack(env, "loadbalancer", "create", "--name", name, "--vip-subnet-id", "front",
                   "--vip-address", VIP, "--wait")  # fmt: skip
    assert lb["vip_subnet_id"] != "front", "the client resolved the subnet's name to its id"
    li = openstack(env, "loadbalancer", "listener", "create", "--name", f"{name}-80", "--protocol", "TCP",
                   "--protocol-port", "80", "--wait", lb["id"])  # fmt: skip
    pool = openstack(env, "loadbalancer", "pool", "create", "--name", f"{name}-pool", "--listener", li["id"],
                     "--protocol", "TCP", "--lb-algorithm", "ROUND_ROBIN", "--wait")  # fmt: skip
    members = [
        openstack(env, "loadbalancer", "member", "create", "--subnet-id", "back", "--address", b.ip,
                  "--protocol-port", "80", "--wait", pool["id"])["id"]
        for b in be
    ]  # fmt: skip
    hm = openstack(env, "loadbalancer", "healthmonitor", "create", "--delay", "5", "--timeout", "3",
                   "--max-retries", "3", "--type", "TCP", "--wait", pool["id"])  # fmt: skip
    shown = openstack(env, "loadbalancer", "show", lb["id"])
    assert (shown["provisioning_status"], shown["operating_status"]) == ("ACTIVE", "ONLINE")
    assert served_by(env) == {b.name for b in be}
    return {"lb": lb["id"], "listener": li["id"], "pool": pool["id"], "hm": hm["id"], **dict(enumerate(members))}  # type: ignore[dict-item]


def test_create_traffic_and_cascade_delete_through_the_cli(env: Env) -> None:
    ids = build(env, "web")
    # The nodes' counters reach the API with the operator's next poll of the
    # nodes (and at most every stats interval): wait for them, with a deadline.
    wait_until(
        lambda: openstack(env, "loadbalancer", "stats", "show", ids["lb"])["bytes_in"] > 0,
        timeout=60,
        interval=1.0,
        what="bytes_in counted",
    )
    tree = json.loads(openstack(env, "loadbalancer", "status", "show", ids["lb"], json_out=False))
    assert tree["loadbalancer"]["listeners"][0]["pools"][0]["members"][0]["operating_status"] == "ONLINE"
    # What Horizon and scripts list: empty, not errors.
    assert openstack(env, "loadbalancer", "l7policy", "list") == []
    assert openstack(env, "loadbalancer", "flavor", "list") == []
    assert openstack(env, "loadbalancer", "availabilityzone", "list") == []
    assert openstack(env, "loadbalancer", "provider", "capability", "list", "xdsr") == []

    openstack(env, "loadbalancer", "delete", "--cascade", "--wait", ids["lb"], json_out=False)
    assert openstack(env, "loadbalancer", "list") == []
    nothing_installed(env)


def test_terraform_order_destroys_the_pool_before_its_listener(env: Env) -> None:
    """Terraform's openstack provider destroys in reverse dependency order:
    monitor, members, pool (still its listener's default pool), listener,
    load balancer; Octavia allows each step, and so must xdsr."""
    ids = build(env, "tf")
    openstack(env, "loadbalancer", "healthmonitor", "delete", "--wait", ids["hm"], json_out=False)
    for i in range(3):
        openstack(env, "loadbalancer", "member", "delete", "--wait", ids["pool"], ids[i], json_out=False)  # type: ignore[index]
    openstack(env, "loadbalancer", "pool", "delete", "--wait", ids["pool"], json_out=False)
    li = openstack(env, "loadbalancer", "listener", "show", ids["listener"])
    assert li["default_pool_id"] is None
    openstack(env, "loadbalancer", "listener", "delete", "--wait", ids["listener"], json_out=False)
    openstack(env, "loadbalancer", "delete", "--wait", ids["lb"], json_out=False)
    assert openstack(env, "loadbalancer", "list") == []
    nothing_installed(env)


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (Debian package prometheus)")
def test_every_components_metrics_pass_promtool(env: Env) -> None:
    with env.api() as c:  # some requests, so the API's series exist
        assert c.get("/v2/lbaas/loadbalancers").status_code == 200
    urls = {
        "apiserver": env.cluster.api_url + "/metrics",
        "operator": env.cluster.operator_metrics_url,
        **{f"agent {n}": u + "/metrics" for n, u in env.cluster.agent_urls.items()},
    }
    texts = {}
    for what, url in urls.items():
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200, f"{what}: {r.status_code}"
        check = subprocess.run(["promtool", "check", "metrics"], input=r.text, capture_output=True, text=True)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), (
            f"{what}: {check.stdout}{check.stderr}"
        )
        assert "process_cpu_seconds_total" in r.text, f"{what}: no process_* collector"
        texts[what] = r.text
    assert "xdsr_api_requests_total{" in texts["apiserver"]
    assert "xdsr_operator_reconcile_duration_seconds_count" in texts["operator"]
    until(
        lambda: 'xdsr_operator_pushes_total{node="lbn0"}' in httpx.get(env.cluster.operator_metrics_url).text,
        what="the operator counts its pushes",
    )


def test_xdsr_status_shows_groups_nodes_and_load_balancers(env: Env) -> None:
    with env.api("a") as c:
        r = c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {"name": "st", "vip_address": VIP}})
        assert r.status_code == 201, r.text
        lb_id = r.json()["loadbalancer"]["id"]
    try:
        env.wait_lb(lb_id)
        token_file = env.cluster.workdir / "agent-token"
        cmd = [sys.executable, "-m", "xdsr.cli", "status", "--store", env.cluster.etcd.endpoint]
        out = subprocess.run([*cmd, "--token-file", str(token_file), "--json"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        view = json.loads(out.stdout)
        (group,) = view["groups"]
        assert sorted(n["name"] for n in group["nodes"]) == ["lbn0", "lbn1", "lbn2"]
        assert all(n["alive"] and n["reachable"] and n["generation"] > 0 for n in group["nodes"]), group["nodes"]
        assert [(lb["id"], lb["provisioning_status"]) for lb in group["loadbalancers"]] == [(lb_id, "ACTIVE")]
        text = subprocess.run(cmd, capture_output=True, text=True)
        assert text.returncode == 0, text.stderr
        assert lb_id in text.stdout and "lbn0" in text.stdout and "alive" in text.stdout
    finally:
        with env.api("a") as c:
            c.delete(f"/v2/lbaas/loadbalancers/{lb_id}")
