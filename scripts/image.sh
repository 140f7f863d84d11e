#!/bin/bash
# Build the xdsr image (Containerfile) with podman, as root, on a machine that
# may reach no container registry: the base image is made from the Debian
# archive with mmdebstrap (the recipe of docs/kubernetes.md#the-image).
#
#   scripts/image.sh [TAG]          # default localhost/xdsr:dev
#
# Env: XDSR_BASE=IMAGE uses that base instead of making one (e.g.
# docker.io/library/debian:bookworm-slim where a registry is reachable);
# XDSR_IMAGE_WORK=DIR keeps the base's rootfs tarball there (default /var/tmp/xdsr-image);
# XDSR_IMAGE_CACHE=0 builds without podman's layer cache (no intermediate images are
# kept: the tests build so, and leave only the tagged image and the base).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-localhost/xdsr:dev}
work=${XDSR_IMAGE_WORK:-/var/tmp/xdsr-image}
base=${XDSR_BASE:-localhost/xdsr-base:bookworm}
mkdir -p "$work"

need=()
for tool in podman mmdebstrap runc; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        podman buildah mmdebstrap runc conmon containernetworking-plugins catatonit uidmap iptables
fi

# This sandbox's limits (hybrid cgroups: runc, not crun; hard rlimits that cannot
# be raised): a containers.conf of our own, named by CONTAINERS_CONF, so the
# host's configuration stays as it is.
conf="$work/containers.conf"
cat > "$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$conf"

if [ -z "${XDSR_BASE:-}" ] && ! podman image exists "$base"; then
    sources=/etc/apt/sources.list.d/debian.sources
    [ -f "$sources" ] || sources="deb http://deb.debian.org/debian bookworm main"
    # Only the build stages run on it (the runtime is assembled from packages): apt and the
    # essential packages, dpkg without fsync as in Debian's official images. No path
    # filters: they pipe every package through mmtarfilter, a python3 script (slow behind
    # a pyenv shim), and nothing of the base reaches the runtime image.
    TMPDIR="$work" mmdebstrap --variant=apt --dpkgopt=force-unsafe-io --aptopt='Acquire::Languages "none"' \
        bookworm "$work/rootfs.tar" "$sources"
    podman import --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$base"
    rm -f "$work/rootfs.tar"
fi

# The host's CA bundle, for a build behind a TLS-intercepting proxy: a build
# secret, mounted for the pip step only, in no layer.
secret=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=hostca,src=/etc/ssl/certs/ca-certificates.crt)

layers=()
[ "${XDSR_IMAGE_CACHE:-1}" = 0 ] && layers=(--layers=false)

podman build --jobs 2 --network host "${layers[@]}" --build-arg BASE="$base" "${secret[@]}" -f Containerfile -t "$tag" .
podman image inspect "$tag" --format '{{.Id}} {{.Size}}' >&2
