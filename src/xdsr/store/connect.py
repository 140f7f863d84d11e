"""One way for every component to open the store it is told to use."""

from __future__ import annotations

from xdsr.store.base import Store

KUBERNETES = "kubernetes"
HELP = (
    "the store: etcd's client URL (http://HOST:PORT), or 'kubernetes' (in-cluster, else $KUBECONFIG or "
    "~/.kube/config; the namespace is the context's) or 'kubernetes:KUBECONFIG'"
)


def is_kubernetes(spec: str) -> bool:
    return spec == KUBERNETES or spec.startswith(KUBERNETES + ":")


def open_store(spec: str, *, component: str) -> Store:
    """The store named by spec. component names the writer (the field manager
    on Kubernetes); only the operator ends expired leases (and deletes their keys)."""
    if is_kubernetes(spec):
        from xdsr.store.kubernetes import KubernetesStore

        return KubernetesStore.from_spec(spec, field_manager=f"xdsr-{component}", reap_leases=component == "operator")
    from xdsr.store.etcd import EtcdConfig, EtcdStore

    return EtcdStore(spec, config=EtcdConfig.from_env())
