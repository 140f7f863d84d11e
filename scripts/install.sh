#!/usr/bin/env bash
# Installs everything xdsr needs on a Debian 12 machine, as root: the Debian
# packages, a virtualenv at .venv with xdsr in it, and the BPF objects built
# from source. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (it installs Debian packages and loads BPF programs)" >&2
    exit 1
fi

# Build and runtime tools: clang/llvm/libbpf/bpftool for the BPF objects,
# iproute2/ethtool/iptables/tcpdump for network namespaces and the
# benchmarks, etcd for the control plane's store, python3-venv for the
# virtualenv, bird2 for BGP toward the routers (the agents' speakers and the
# lab's routers; run by xdsr itself, never as the Debian service), prometheus
# for promtool (tests check every /metrics and the alert rules with it);
# podman, mmdebstrap and runc (with conmon, catatonit, CNI plugins) build the
# image and run the agent from it (scripts/image.sh, tests/kube/test_image.py).
PACKAGES=(
    clang llvm libbpf-dev libbpf1 bpftool linux-libc-dev libc6-dev make gcc
    iproute2 ethtool iptables tcpdump procps kmod
    etcd-server etcd-client bird2
    python3 python3-venv python3-dev
    prometheus
    podman mmdebstrap runc conmon catatonit containernetworking-plugins uidmap
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# bpffs: where the data plane pins its maps.
if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then
    mount -t bpf bpf /sys/fs/bpf
fi

make -C bpf -s

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.xdsr-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints/octavia-test.txt -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    # The real Octavia that tests/octavia run, at the exact versions tested.
    .venv/bin/pip install -q -e '.[test,octavia,kubernetes]' -r constraints/octavia-test.txt
    touch "$stamp"
fi
echo "install.sh: ready ($(.venv/bin/python --version), $(clang --version | head -1))"
