"""Every Kubernetes object of an xdsr deployment, from one Values (docs/kubernetes.md).

The layout is the paper's (section IV.C): the API server and the operator
are Deployments of the LB control cluster; each node labelled
xdsr.io/lbn=true runs one LB node agent of the DaemonSet. Both halves talk
only to the Kubernetes API that holds the custom resources, so they may run
in one cluster or in two (the agents then get a kubeconfig for the control
cluster: docs/kubernetes.md).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from xdsr.deploy.crds import crds
from xdsr.deploy.values import Resources, Values
from xdsr.store.kubernetes import GROUP

Obj = dict[str, Any]

LEASES = "coordination.k8s.io"
KINDS = ["loadbalancers", "lbngroups", "lbngrouprules", "lbnodes", "storeentries"]
SECCOMP_PROFILE = "seccomp-bpf.json"
# What the agent needs of the kernel, and nothing more (docs/kubernetes.md):
# BPF: load programs and maps; NET_ADMIN: attach XDP, netlink neighbour and link
# changes; PERFMON: pointer arithmetic in the verifier's eyes for non-root BPF;
# NET_RAW: ARP/ND resolution and health checks from raw sockets;
# SYS_RESOURCE: maps above RLIMIT_MEMLOCK on kernels without memcg accounting.
AGENT_CAPABILITIES = ["BPF", "NET_ADMIN", "PERFMON", "NET_RAW", "SYS_RESOURCE"]


def seccomp_profile() -> Obj:
    """The Localhost seccomp profile the agent runs under: allows bpf and perf_event_open with CAP_BPF."""
    return json.loads(resources.files("xdsr.deploy").joinpath(SECCOMP_PROFILE).read_text())  # type: ignore[no-any-return]


def _labels(v: Values, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "xdsr",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "xdsr",
        **v.labels,
    }


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "xdsr", "app.kubernetes.io/component": component}


def _meta(v: Values, name: str, component: str, namespaced: bool = True) -> Obj:
    meta: Obj = {"name": name, "labels": _labels(v, component)}
    if namespaced:
        meta["namespace"] = v.namespace
    return meta


def _resources(r: Resources) -> Obj:
    return {"requests": {"cpu": r.cpu, "memory": r.memory}, "limits": {"memory": r.memory_limit}}


def _restricted() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _rules(write: list[str], read: list[str], status: list[str], leases: bool) -> list[Obj]:
    rules: list[Obj] = []
    if write:
        rules.append(
            {"apiGroups": [GROUP], "resources": write, "verbs": ["get", "list", "watch", "create", "update", "delete"]}
        )
    if read:
        rules.append({"apiGroups": [GROUP], "resources": read, "verbs": ["get", "list", "watch"]})
    if status:
        rules.append({"apiGroups": [GROUP], "resources": [f"{r}/status" for r in status], "verbs": ["get", "update"]})
    if leases:
        rules.append(
            {
                "apiGroups": [LEASES],
                "resources": ["leases"],
                "verbs": ["get", "list", "watch", "create", "update", "delete"],
            }
        )
    rules.append({"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]})
    return rules


def _rbac(v: Values, component: str, rules: list[Obj]) -> list[Obj]:
    name = f"xdsr-{component}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(v, name, component),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(v, name, component),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(v, name, component),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": v.namespace}],
        },
    ]


def _apiserver(v: Values) -> list[Obj]:
    a = v.apiserver
    args = [
        "apiserver",
        "--store",
        "kubernetes",
        "--listen",
        f"0.0.0.0:{a.port}",
        "--tokens-file",
        "/etc/xdsr/api/tokens.yaml",
    ]
    mounts = [{"name": "tokens", "mountPath": "/etc/xdsr/api", "readOnly": True}]
    volumes: list[Obj] = [{"name": "tokens", "secret": {"secretName": a.tokens_secret, "defaultMode": 0o400}}]
    if a.networks_configmap:
        args += ["--networks-file", "/etc/xdsr/networks/networks.yaml"]
        mounts.append({"name": "networks", "mountPath": "/etc/xdsr/networks", "readOnly": True})
        volumes.append({"name": "networks", "configMap": {"name": a.networks_configmap}})
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": "apiserver",
        "image": v.image.ref,
        "imagePullPolicy": v.image.pull_policy,
        "args": args,
        "ports": [{"name": "http", "containerPort": a.port}],
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 6, "initialDelaySeconds": 5},
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 2},
        "resources": _resources(a.resources),
        "securityContext": _restricted(),
        "volumeMounts": mounts,
    }
    return [
        *_rbac(v, "apiserver", _rules(["loadbalancers"], ["lbngroups", "lbngrouprules", "lbnodes"], [], False)),
        _deployment(v, "apiserver", a.replicas, container, volumes),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(v, "xdsr-api", "apiserver"),
            "spec": {
                "type": a.service_type,
                "selector": _selector("apiserver"),
                "ports": [{"name": "http", "port": a.port, "targetPort": "http"}],
            },
        },
        _pdb(v, "apiserver", {"maxUnavailable": 1}),
    ]


def _operator(v: Values) -> list[Obj]:
    o = v.operator
    container = {
        "name": "operator",
        "image": v.image.ref,
        "imagePullPolicy": v.image.pull_policy,
        "args": [
            "operator",
            "--store",
            "kubernetes",
            "--token-file",
            "/etc/xdsr/agent/token",
            "--group-size",
            str(o.group_size),
            "--resync",
            str(o.resync),
            "--leader-elect",
            "--health-listen",
            f"0.0.0.0:{o.health_port}",
            "--agent-ca",
            "/etc/xdsr/tls/ca.crt",
            "--agent-cert",
            "/etc/xdsr/tls/tls.crt",
            "--agent-key",
            "/etc/xdsr/tls/tls.key",
        ],
        "ports": [{"name": "health", "containerPort": o.health_port}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "initialDelaySeconds": 5,
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10},
        "resources": _resources(o.resources),
        "securityContext": _restricted(),
        "volumeMounts": [
            {"name": "agent-token", "mountPath": "/etc/xdsr/agent", "readOnly": True},
            {"name": "tls", "mountPath": "/etc/xdsr/tls", "readOnly": True},
        ],
    }
    volumes = [
        {"name": "agent-token", "secret": {"secretName": v.agent_token_secret, "defaultMode": 0o400}},
        {"name": "tls", "secret": {"secretName": v.operator_tls_secret, "defaultMode": 0o400}},
    ]
    # all kinds: it also ends expired leases and deletes the keys on them (LB nodes)
    rules = _rules(KINDS, [], ["loadbalancers", "lbngroups"], True)
    return [
        *_rbac(v, "operator", rules),
        _deployment(v, "operator", o.replicas, container, volumes),
        _pdb(v, "operator", {"maxUnavailable": 1}),
    ]


def _deployment(v: Values, component: str, replicas: int, container: Obj, volumes: list[Obj]) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(v, f"xdsr-{component}", component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(component)},
            "template": {
                "metadata": {"labels": _labels(v, component)},
                "spec": {
                    "serviceAccountName": f"xdsr-{component}",
                    "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": volumes,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": _selector(component)},
                        }
                    ],
                },
            },
        },
    }


def _pdb(v: Values, component: str, budget: Obj) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(v, f"xdsr-{component}", component),
        "spec": {**budget, "selector": {"matchLabels": _selector(component)}},
    }


def _agent(v: Values) -> list[Obj]:
    g = v.agent
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
    ]
    security: Obj = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsUser": 0,  # capabilities of a non-root user are lost at exec without ambient ones
        "capabilities": {"drop": ["ALL"], "add": AGENT_CAPABILITIES},
        "seccompProfile": (
            {"type": "Localhost", "localhostProfile": g.seccomp_localhost_profile}
            if g.seccomp_localhost_profile
            else {"type": "RuntimeDefault"}
        ),
    }

    # The API asks every caller for a client certificate, which the kubelet has not: the
    # probes ask the agent's plain-HTTP listener on the node's loopback (hostNetwork), which
    # answers whether the node is ready and why not, nothing of what it serves (docs/agent.md).
    def probe(path: str) -> Obj:
        get = {"host": "127.0.0.1", "port": g.health_port, "path": path}
        return {"httpGet": get, "periodSeconds": 5, "timeoutSeconds": 3}

    store = "kubernetes"
    mounts: list[Obj] = []
    volumes: list[Obj] = []
    if g.control_kubeconfig_secret:  # the paper's two clusters: the resources are in the control cluster
        store = "kubernetes:/etc/xdsr/kube/kubeconfig"
        mounts.append({"name": "control-kubeconfig", "mountPath": "/etc/xdsr/kube", "readOnly": True})
        volumes.append(
            {"name": "control-kubeconfig", "secret": {"secretName": g.control_kubeconfig_secret, "defaultMode": 0o400}}
        )
    container = {
        "name": "agent",
        "image": v.image.ref,
        "imagePullPolicy": v.image.pull_policy,
        "args": [
            "agent",
            "--iface",
            g.iface,
            "--name",
            "$(NODE_NAME)",
            "--listen",
            f"0.0.0.0:{g.port}",
            "--health-listen",
            f"127.0.0.1:{g.health_port}",
            "--advertise",
            f"https://$(NODE_IP):{g.port}",
            "--tls-cert",
            "/etc/xdsr/tls/tls.crt",
            "--tls-key",
            "/etc/xdsr/tls/tls.key",
            "--tls-client-ca",
            "/etc/xdsr/tls/ca.crt",
            "--store",
            store,
            "--token-file",
            "/etc/xdsr/agent/token",
            "--pin-dir",
            g.pin_dir,
            "--mode",
            g.mode,
            "--state-dir",
            "/run/xdsr/agent",
            "--lease-ttl",
            str(g.lease_ttl),
        ],
        "env": env,
        "ports": [{"name": "https", "containerPort": g.port, "hostPort": g.port}],
        # Ready once the program is attached and the operator's rules applied: a rolling
        # update moves to the next node only then.
        "readinessProbe": {**probe("/healthz"), "failureThreshold": 2},
        "livenessProbe": {**probe("/livez"), "failureThreshold": 6, "initialDelaySeconds": 10},
        "resources": _resources(g.resources),
        "securityContext": security,
        "volumeMounts": [
            {"name": "bpffs", "mountPath": "/sys/fs/bpf", "mountPropagation": "HostToContainer"},
            {"name": "state", "mountPath": "/run/xdsr"},
            {"name": "agent-token", "mountPath": "/etc/xdsr/agent", "readOnly": True},
            {"name": "tls", "mountPath": "/etc/xdsr/tls", "readOnly": True},
            *mounts,
        ],
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(v, "xdsr-lbn", "lbn"),
        "spec": {
            "selector": {"matchLabels": _selector("lbn")},
            # One node at a time: the pod that replaces an agent adopts its pinned maps
            # and attached program, so the node forwards throughout (docs/agent.md).
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": g.max_unavailable}},
            "template": {
                "metadata": {"labels": _labels(v, "lbn")},
                "spec": {
                    "serviceAccountName": "xdsr-lbn",
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {g.node_label: g.node_label_value},
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "system-node-critical",
                    # SIGTERM: the agent revokes its lease (the operator stops counting the node)
                    # and leaves XDP attached; `xdsr dp detach` removes it when asked.
                    "terminationGracePeriodSeconds": g.termination_grace_seconds,
                    "containers": [container],
                    "volumes": [
                        {"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf", "type": "DirectoryOrCreate"}},
                        {"name": "state", "hostPath": {"path": "/run/xdsr", "type": "DirectoryOrCreate"}},
                        {"name": "agent-token", "secret": {"secretName": v.agent_token_secret, "defaultMode": 0o400}},
                        {"name": "tls", "secret": {"secretName": v.agent_tls_secret, "defaultMode": 0o400}},
                        *volumes,
                    ],
                },
            },
        },
    }
    out = [
        daemonset,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(v, "xdsr-lbn", "lbn"),
            "spec": {
                "clusterIP": "None",
                "selector": _selector("lbn"),
                "ports": [{"name": "https", "port": g.port, "targetPort": g.port}],
            },
        },
    ]
    if v.service_monitor:
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": _meta(v, "xdsr-lbn", "lbn"),
                "spec": {
                    "selector": {"matchLabels": _selector("lbn")},
                    "endpoints": [
                        {
                            "port": "https",
                            "path": "/metrics",
                            "interval": "15s",
                            "scheme": "https",
                            # the agents accept callers with a certificate from their client CA
                            "tlsConfig": {
                                "ca": {"secret": {"name": v.operator_tls_secret, "key": "ca.crt"}},
                                "cert": {"secret": {"name": v.operator_tls_secret, "key": "tls.crt"}},
                                "keySecret": {"name": v.operator_tls_secret, "key": "tls.key"},
                                "insecureSkipVerify": False,
                            },
                        }
                    ],
                },
            }
        )
    return out


def _lbn_access(v: Values) -> list[Obj]:
    return _rbac(v, "lbn", _rules(["lbnodes"], [], [], True))


def manifests(v: Values) -> list[Obj]:
    """Every object of v.components, in the order kubectl apply can create them."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": v.namespace,
            "labels": {**_labels(v, "namespace"), "pod-security.kubernetes.io/enforce": "privileged"},
        },
    }
    out: list[Obj] = []
    if "crds" in v.components:
        out += crds()
    out.append(namespace)
    for name, part in (("apiserver", _apiserver), ("operator", _operator), ("lbn-access", _lbn_access)):
        if name in v.components:
            out += part(v)
    if "lbn" in v.components:
        if "lbn-access" not in v.components:  # the LB cluster: the agents' rights are in the control cluster
            sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(v, "xdsr-lbn", "lbn")}
            out.append({**sa, "automountServiceAccountToken": False})
        out += _agent(v)
    return out
