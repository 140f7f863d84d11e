"""The whole control plane on the Kubernetes store: the API server, the
operator and three agents as processes of a LocalCluster on a lab fabric,
all with `--store kubernetes:KUBECONFIG` pointing at the fake API server
(tests/kube/fakeapi.py). A load balancer created through the REST API ends
up forwarded by all three LB nodes, and deleted, by none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import IS_ROOT, needs_root
from tests.kube.fakeapi import FakeKubeApi, fake_kube_api
from xdsr.bench.controlplane import lb_body
from xdsr.dataplane import libbpf as bpf
from xdsr.lab import FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.local.cluster import LocalCluster
from xdsr.local.probes import Probes

pytestmark = needs_root


@dataclass
class Env:
    api: FakeKubeApi
    cluster: LocalCluster


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not IS_ROOT:
        pytest.skip("needs root")
    spec = FabricSpec(n_lbns=3, prefix="xk8s", echo_servers=False, tenants=(TenantSpec(name="t", n_backends=1),))
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with fake_kube_api() as api, build_fabric(spec) as fab:
        api.kubeconfig(kubeconfig)
        with LocalCluster.on_fabric(fab, health_checks=False, resync=2.0, store=f"kubernetes:{kubeconfig}") as cluster:
            yield Env(api, cluster)


def _probes(cluster: LocalCluster) -> Probes:
    def attached() -> Probes | None:
        try:
            return Probes.of(cluster)
        except (bpf.BpfError, FileNotFoundError):
            return None

    return wait_until(attached, timeout=30, interval=0.1, what="XDP attached on every LB node")  # type: ignore[no-any-return]


def test_a_load_balancer_created_through_the_api_is_forwarded_by_all_three_nodes(env: Env) -> None:
    cluster = env.cluster
    probes = _probes(cluster)
    client = cluster.client()
    vip = "198.19.0.1"
    try:
        t0 = time.perf_counter()
        resp = client.post("/v2/lbaas/loadbalancers", json=lb_body("k8s", vip, 255, 1))
        assert resp.status_code == 201, resp.text
        lb_id = resp.json()["loadbalancer"]["id"]
        try:
            wait_until(lambda: all(probes.forwarding(vip)), timeout=60, interval=0.002, what="all nodes forward")
        except TimeoutError:
            raise AssertionError(cluster.logs()) from None
        took = time.perf_counter() - t0
        print(f"\nAPI call to all three LB nodes forwarding (Kubernetes store on the fake API): {took * 1000:.0f} ms")

        def active() -> bool:
            lb = client.get(f"/v2/lbaas/loadbalancers/{lb_id}").json()["loadbalancer"]
            return bool(lb["provisioning_status"] == "ACTIVE")

        wait_until(active, timeout=30, interval=0.05, what="ACTIVE")

        def group_ready() -> bool:  # what `kubectl get lbngroups` shows, written beside the operator
            groups = [o for (r, _, _), o in env.api.state.objects.items() if r == "xdsr.io/lbngroups"]
            st = groups[0].get("status") if len(groups) == 1 else None
            ready = {c["type"]: c["status"] for c in (st or {}).get("conditions", [])}.get("Ready")
            return bool(st and st["loadBalancers"] == 1 and st["ready"] == "3/3" and ready == "True")

        wait_until(group_ready, timeout=30, interval=0.1, what="the LBNGroup's status Ready, 3/3, one load balancer")
        # What the control plane wrote is custom resources of the fake API, not etcd.
        kinds = {r for (r, _, _) in env.api.state.objects}
        assert {"xdsr.io/loadbalancers", "xdsr.io/lbngroups", "xdsr.io/lbngrouprules", "xdsr.io/lbnodes"} <= kinds
        assert "coordination.k8s.io/leases" in kinds  # the agents' registrations
        assert not cluster.own_etcd  # etcd never started

        assert client.delete(f"/v2/lbaas/loadbalancers/{lb_id}", params={"cascade": "true"}).status_code == 204
        wait_until(lambda: not any(probes.forwarding(vip)), timeout=60, interval=0.01, what="no node forwards")
    finally:
        client.close()
        probes.close()
