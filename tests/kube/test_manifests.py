"""`xdsr manifests`: every object valid against Kubernetes' own schemas
(kubernetes-validate, pinned), the CRDs structural, and the documents the
control plane writes valid against the CRDs' schemas, which refuse what the
models refuse."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from xdsr.cli.main import app
from xdsr.deploy.crds import crds
from xdsr.deploy.manifests import manifests
from xdsr.deploy.values import Values
from xdsr.model.group import Group, LbnRecord
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus

K8S_VERSION = "1.37.0"  # kubernetes-validate 1.37.0's newest schemas


def _rendered(values: dict[str, Any] | None = None, tmp_path: Any = None) -> list[dict[str, Any]]:
    args = ["manifests"]
    if values is not None:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_every_object_is_valid_kubernetes(tmp_path: Any) -> None:
    for values in (None, {"namespace": "lb-control", "agent": {"seccomp_localhost_profile": None},
                          "apiserver": {"networks_configmap": None}, "service_monitor": False}):  # fmt: skip
        objs = _rendered(values, tmp_path)
        kinds = {o["kind"] for o in objs}
        assert {"CustomResourceDefinition", "Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment",
                "Service", "DaemonSet", "PodDisruptionBudget"} <= kinds  # fmt: skip
        for obj in objs:
            if obj["apiVersion"].startswith("monitoring.coreos.com"):
                continue  # the Prometheus Operator's kind: not in Kubernetes' schemas
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_lb_node_daemonset_is_least_privilege() -> None:
    ds = next(o for o in manifests(Values()) if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["hostNetwork"] is True and pod["nodeSelector"] == {"xdsr.io/lbn": "true"}
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == {"BPF", "NET_ADMIN", "PERFMON", "NET_RAW", "SYS_RESOURCE"}
    assert sc["seccompProfile"] == {"type": "Localhost", "localhostProfile": "xdsr/seccomp-bpf.json"}
    assert {"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf", "type": "DirectoryOrCreate"}} in pod["volumes"]
    # mutual TLS to the operator; the kubelet, which has no client certificate, probes the
    # plain-HTTP listener the agent opens on the node's loopback
    health = f"127.0.0.1:{Values().agent.health_port}"
    assert c["args"][c["args"].index("--health-listen") + 1] == health
    for kind, path in (("readinessProbe", "/healthz"), ("livenessProbe", "/livez")):
        assert c[kind]["httpGet"] == {"host": "127.0.0.1", "port": Values().agent.health_port, "path": path}
    assert {"--tls-cert", "--tls-key", "--tls-client-ca"} <= set(c["args"]) and "--insecure-http" not in c["args"]
    assert any(v.get("secret", {}).get("secretName") == "xdsr-agent-tls" for v in pod["volumes"])


def test_the_operator_reaches_the_agents_over_mutual_tls() -> None:
    op = next(o for o in manifests(Values()) if o["kind"] == "Deployment" and o["metadata"]["name"] == "xdsr-operator")
    pod = op["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {"--agent-ca", "--agent-cert", "--agent-key"} <= set(c["args"]) and "--insecure-http" not in c["args"]
    assert any(v.get("secret", {}).get("secretName") == "xdsr-operator-tls" for v in pod["volumes"])


def test_each_component_may_touch_only_its_kinds() -> None:
    roles = {o["metadata"]["name"]: o["rules"] for o in manifests(Values()) if o["kind"] == "Role"}

    def may(role: str, verb: str, resource: str) -> bool:
        return any(resource in r["resources"] and verb in r["verbs"] for r in roles[role])

    assert may("xdsr-apiserver", "update", "loadbalancers") and not may("xdsr-apiserver", "update", "lbngroups")
    assert not may("xdsr-apiserver", "update", "loadbalancers/status")
    assert may("xdsr-operator", "update", "loadbalancers/status") and may("xdsr-operator", "update", "leases")
    assert may("xdsr-lbn", "create", "lbnodes") and not may("xdsr-lbn", "get", "loadbalancers")
    assert not any("*" in r["verbs"] or "*" in r["resources"] for rules in roles.values() for r in rules)


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's nullable, as JSON Schema says it, to validate with jsonschema."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if out.pop("nullable", False):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _schema(kind: str, part: str) -> dict[str, Any]:
    crd = next(c for c in crds() if c["spec"]["names"]["kind"] == kind)
    (version,) = crd["spec"]["versions"]
    return _openapi_to_jsonschema(version["schema"]["openAPIV3Schema"]["properties"][part])


def _structural(node: Any, path: str = "") -> None:
    if isinstance(node, dict):
        assert ("$ref" not in node and "additionalProperties" not in node) or "properties" not in node, path
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            assert "type" not in branch, f"{path}: a type inside anyOf is not structural"
        if "x-kubernetes-preserve-unknown-fields" not in node and "x-kubernetes-int-or-string" not in node:
            assert "type" in node or "anyOf" in node, f"{path}: no type"
        for k, v in node.items():
            if k == "properties":
                for name, sub in v.items():
                    _structural(sub, f"{path}.{name}")
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                _structural(v, f"{path}[]")


LB = {
    "id": "lb1", "project_id": "p", "created_at": "2026-01-01T00:00:00Z", "vip_address": "203.0.113.10",
    "vip_segment": {"type": "vlan", "id": 10},
    "listeners": [{"id": "l1", "project_id": "p", "created_at": "2026-01-01T00:00:00Z", "protocol": "TCP",
                   "protocol_port": 80, "default_pool_id": "p1"}],
    "pools": [{"id": "p1", "project_id": "p", "created_at": "2026-01-01T00:00:00Z", "protocol": "TCP",
               "lb_algorithm": "SOURCE_IP_PORT",
               "members": [{"id": "m1", "project_id": "p", "created_at": "2026-01-01T00:00:00Z",
                            "address": "10.1.0.11", "protocol_port": 80, "weight": 3}]}],
}  # fmt: skip


def test_crds_are_structural_and_hold_what_the_control_plane_writes() -> None:
    for crd in crds():
        for version in crd["spec"]["versions"]:
            _structural(version["schema"]["openAPIV3Schema"])
    docs = {
        ("LoadBalancer", "spec"): LoadBalancer.model_validate(LB),
        ("LoadBalancer", "status"): LoadBalancerStatus(id="lb1", observed_generation=1),
        ("LBNGroup", "spec"): Group(name="g0", lbns=["lbn1", "lbn2", "lbn3"], epoch=2),
        ("LBNode", "spec"): LbnRecord(name="lbn1", endpoint="http://10.0.0.5:9101", started_at=1.5),
    }
    for (kind, part), doc in docs.items():
        jsonschema.validate(json.loads(doc.model_dump_json()), _schema(kind, part))


@pytest.mark.parametrize(
    ("path", "value"),
    [(("pools", 0, "members", 0, "protocol_port"), 70000), (("pools", 0, "members", 0, "weight"), 257),
     (("listeners", 0, "protocol"), "HTTP"), (("vip_segment", "id"), 4095)],
)  # fmt: skip
def test_the_crd_refuses_what_the_model_refuses(path: tuple[Any, ...], value: Any) -> None:
    bad = copy.deepcopy(LB)
    node: Any = bad
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(Exception):  # noqa: B017  (pydantic's ValidationError)
        LoadBalancer.model_validate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema("LoadBalancer", "spec"))


@pytest.mark.parametrize(
    ("segment", "valid"),
    [({"type": "vxlan", "id": 70000}, True), ({"type": "geneve", "id": 1}, True), ({"type": "vlan", "id": 4094}, True),
     ({"id": 12}, True), ({"type": "vxlan", "id": 0}, False), ({"type": "vlan", "id": 5000}, False),
     ({"id": 5000}, False)],
)  # fmt: skip
def test_the_crd_bounds_a_segment_id_by_its_type_as_the_model_does(segment: dict[str, Any], valid: bool) -> None:
    doc = {**copy.deepcopy(LB), "vip_segment": segment}
    schema = _schema("LoadBalancer", "spec")
    if valid:
        LoadBalancer.model_validate(doc)
        jsonschema.validate(doc, schema)
        return
    with pytest.raises(Exception):  # noqa: B017  (pydantic's ValidationError)
        LoadBalancer.model_validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_the_shipped_seccomp_profile_allows_bpf_with_cap_bpf_only() -> None:
    from pathlib import Path

    from xdsr.deploy.manifests import seccomp_profile
    from xdsr.deploy.seccomp import derive

    profile = seccomp_profile()
    allow = [r for r in profile["syscalls"] if "bpf" in r["names"]]
    assert allow == [{"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "xdsr: bpf with CAP_BPF",
                      "includes": {"caps": ["CAP_BPF"]}, "excludes": {}}]  # fmt: skip
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    debian = Path("/usr/share/containers/seccomp.json")
    if debian.exists():  # the shipped file is what derive() makes of Debian's default
        assert profile == derive(json.loads(debian.read_text()))


def test_the_papers_two_clusters(tmp_path: Any) -> None:
    """The control cluster holds the resources and the LB nodes' rights; the LB cluster runs the
    DaemonSet, whose agents reach the control cluster through a kubeconfig."""
    control = _rendered({"components": ["crds", "apiserver", "operator", "lbn-access"]}, tmp_path)
    lb = _rendered({"components": ["lbn"], "agent": {"control_kubeconfig_secret": "xdsr-control"}}, tmp_path)
    assert not any(o["kind"] == "DaemonSet" for o in control)
    assert any(o["kind"] == "Role" and o["metadata"]["name"] == "xdsr-lbn" for o in control)
    assert not any(o["kind"] in ("CustomResourceDefinition", "Role", "Deployment") for o in lb)
    ds = next(o for o in lb if o["kind"] == "DaemonSet")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    assert c["args"][c["args"].index("--store") + 1] == "kubernetes:/etc/xdsr/kube/kubeconfig"
    assert {"name": "control-kubeconfig", "secret": {"secretName": "xdsr-control", "defaultMode": 0o400}} in ds["spec"][
        "template"
    ]["spec"]["volumes"]
    sa = next(o for o in lb if o["kind"] == "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False  # no rights in the LB cluster
    for obj in control + lb:
        if not obj["apiVersion"].startswith("monitoring.coreos.com"):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
