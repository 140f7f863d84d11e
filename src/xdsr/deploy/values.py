"""The one typed description of a Kubernetes deployment of xdsr (`xdsr manifests --values FILE`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

_Name = str  # DNS-1123 names are checked by kube-apiserver itself


class _Values(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Image(_Values):
    repository: str = "localhost/xdsr"
    tag: str = "dev"
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class Resources(_Values):
    cpu: str = "100m"
    memory: str = "128Mi"
    memory_limit: str = "512Mi"


class ApiServerValues(_Values):
    replicas: int = Field(2, ge=1)
    port: int = Field(9876, ge=1, le=65535)
    tokens_secret: _Name = "xdsr-api-tokens"  # key tokens.yaml: tokens: [{token, project_id, admin}]
    networks_configmap: _Name | None = "xdsr-networks"  # key networks.yaml; None: no Neutron-style subnets
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    resources: Resources = Resources()


class OperatorValues(_Values):
    replicas: int = Field(2, ge=1)  # one acts (the Lease xdsr-operator), the other stands by
    group_size: int = Field(3, ge=1)
    resync: float = Field(10.0, gt=0)
    health_port: int = Field(9102, ge=1, le=65535)  # its liveness probe (GET /healthz)
    resources: Resources = Resources()


class AgentValues(_Values):
    node_label: str = "xdsr.io/lbn"  # the DaemonSet runs on nodes labelled node_label=node_label_value
    node_label_value: str = "true"
    iface: str = "eth1"  # the trunk interface on every LB node
    port: int = Field(9101, ge=1, le=65535)
    health_port: int = Field(9879, ge=1, le=65535)  # the kubelet's probes, on the node's 127.0.0.1
    mode: Literal["native", "generic"] = "native"
    lease_ttl: int = Field(10, ge=2)
    pin_dir: str = "/sys/fs/bpf/xdsr"
    # a Localhost profile in the kubelet's seccomp directory (shipped: deploy/seccomp-bpf.json);
    # None: RuntimeDefault, which on most runtimes refuses bpf() without CAP_SYS_ADMIN
    seccomp_localhost_profile: str | None = "xdsr/seccomp-bpf.json"
    max_unavailable: int = Field(1, ge=1)  # LB nodes a rolling update takes down at once
    termination_grace_seconds: int = Field(30, ge=1)
    # The paper's two clusters: the LB nodes in the LB cluster reach the custom resources in
    # the LB control cluster through a kubeconfig (Secret key `kubeconfig`) of the control
    # cluster's xdsr-lbn ServiceAccount. None: the cluster the DaemonSet runs in.
    control_kubeconfig_secret: _Name | None = None
    resources: Resources = Resources(cpu="200m", memory="256Mi", memory_limit="1Gi")


Component = Literal["crds", "apiserver", "operator", "lbn-access", "lbn"]
ALL: list[Component] = ["crds", "apiserver", "operator", "lbn-access", "lbn"]


class Values(_Values):
    namespace: _Name = "xdsr"
    # What to print: all in one cluster; in the paper's two, the control cluster gets
    # crds, apiserver, operator and lbn-access (the LB nodes' RBAC on the custom resources),
    # the LB cluster gets lbn (the DaemonSet, its Service and ServiceMonitor).
    components: list[Component] = ALL
    image: Image = Image()
    agent_token_secret: _Name = "xdsr-agent-token"  # key token: the bearer token agents accept from the operator
    # Mutual TLS between the operator and the agents (docs/agent.md, Security), as
    # kubernetes.io/tls Secrets with ca.crt: the agents' server certificate must name every
    # LB node's address (IP SANs, or one per node issued e.g. by cert-manager's CSI driver);
    # the operator's is a clientAuth certificate from the CA the agents trust.
    agent_tls_secret: _Name = "xdsr-agent-tls"
    operator_tls_secret: _Name = "xdsr-operator-tls"
    apiserver: ApiServerValues = ApiServerValues()
    operator: OperatorValues = OperatorValues()
    agent: AgentValues = AgentValues()
    service_monitor: bool = True  # a monitoring.coreos.com ServiceMonitor (Prometheus Operator) for the agents
    labels: dict[str, str] = {}


def load_values(path: Path | None) -> Values:
    if path is None:
        return Values()
    return Values.model_validate(yaml.safe_load(path.read_text()) or {})
