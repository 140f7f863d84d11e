"""The image (Containerfile): the LB node agent run from it by podman inside a
lab network namespace, with the DaemonSet's least privilege (not privileged;
CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_NET_RAW, CAP_SYS_RESOURCE; the
shipped seccomp profile; host bpffs), forwards real TCP and UDP; when the
container is replaced (a DaemonSet update) the node forwards throughout and
the new agent adopts the pinned maps.

The test builds the image (XDSR_IMAGE, default localhost/xdsr:dev) from this
tree with `scripts/image.sh` first: an image left from another checkout would
test other code. It runs wherever podman is installed (scripts/install.sh
installs it; a cold build, the Debian base included, takes minutes: figures in
docs/kubernetes.md) and is skipped without it, or with XDSR_IMAGE_TEST=0. It
builds without podman's layer cache and removes the image its tag moved from:
the tagged image and the base stay.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import services_doc
from tests.conftest import IS_ROOT, needs_root
from xdsr.dataplane.netns import in_netns
from xdsr.deploy.manifests import AGENT_CAPABILITIES, seccomp_profile
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric

pytestmark = needs_root

IMAGE = os.environ.get("XDSR_IMAGE", "localhost/xdsr:dev")
ROOT = Path(__file__).resolve().parents[2]
CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def _podman(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.environ.get("XDSR_IMAGE_TEST") == "0":
        pytest.skip("XDSR_IMAGE_TEST=0")
    if not IS_ROOT:
        pytest.skip("needs root")
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/install.sh installs it)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONF)  # this sandbox's limits (docs/kubernetes.md, the image)
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    before = set(_dangling(env))
    try:
        t0 = time.perf_counter()
        build_env = dict(os.environ, XDSR_IMAGE_CACHE="0")  # no intermediate images left behind
        subprocess.run([str(ROOT / "scripts/image.sh"), IMAGE], env=build_env, check=True, timeout=1800)
        size = int(_podman(env, "image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
        print(f"\nimage build: {time.perf_counter() - t0:.0f} s; size {size / 1e6:.0f} MB")
        yield env
    finally:
        # The image the tag moved from, not the tagged image: each removal may leave its
        # parent (an older build's layer cache) dangling in turn.
        for _ in range(20):
            left = [i for i in _dangling(env) if i not in before]
            if not left:
                break
            _podman(env, "rmi", *left, check=False)


def _dangling(env: dict[str, str]) -> list[str]:
    return _podman(env, "images", "-a", "-q", "--no-trunc", "--filter", "dangling=true", check=False).stdout.split()


@pytest.fixture(scope="module")
def fab(podman_env: dict[str, str]) -> Iterator[Fabric]:
    spec = FabricSpec(n_lbns=1, prefix="xim", tenants=(TenantSpec(n_backends=3),))
    with build_fabric(spec) as fabric:
        yield fabric


def test_the_agent_from_the_image_forwards_real_traffic(
    podman_env: dict[str, str], fab: Fabric, tmp_path: Path
) -> None:
    ns, ifname, _ = fab.lbn_trunk(0)
    token = secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    profile = tmp_path / "seccomp-bpf.json"
    profile.write_text(json.dumps(seccomp_profile()))
    pins = fab.lab.bpffs_dir() / "image-agent"  # removed with the lab
    name = f"xdsr-imgtest-{uuid.uuid4().hex[:8]}"
    run = [
        "run", "-d", "--name", name, "--network", f"ns:/run/netns/{ns}",
        "--user", "0", "--cap-drop", "ALL", "--cap-add", ",".join(AGENT_CAPABILITIES),
        "--security-opt", f"seccomp={profile}", "--security-opt", "no-new-privileges", "--read-only",
        "-v", "/sys/fs/bpf:/sys/fs/bpf", "-v", f"{tmp_path}:/etc/xdsr/agent:ro", "--tmpfs", "/run/xdsr",
        IMAGE, "agent", "--iface", ifname, "--name", "lbn0", "--listen", "0.0.0.0:9101",
        "--token-file", "/etc/xdsr/agent/token", "--pin-dir", str(pins), "--state-dir", "/run/xdsr/agent",
        "--max-services", "64", "--mode", "native", "--insecure-http",
    ]  # fmt: skip
    doc = {"generation": 1, "services": services_doc(fab)}
    names = [name, name + "-b"]

    def put_state(container: str) -> httpx.Response:
        """PUT the state as the operator would, until the agent takes it."""
        with (
            in_netns(ns),
            httpx.Client(
                base_url="http://127.0.0.1:9101", headers={"Authorization": f"Bearer {token}"}, timeout=5
            ) as http,
        ):
            deadline = time.monotonic() + 60
            while True:
                try:
                    r = http.put("/v1/state", json=doc)
                    if r.status_code == 200:
                        return r
                except httpx.TransportError:
                    pass
                state = _podman(podman_env, "inspect", container, "--format", "{{.State.Status}}", check=False).stdout
                assert "exited" not in state, _podman(podman_env, "logs", container, check=False).stderr
                assert time.monotonic() < deadline, _podman(podman_env, "logs", container, check=False).stderr
                time.sleep(0.02)

    def traffic() -> None:
        tcp = fab.tcp_client(0, conns=24, interval_ms=50, duration=0.3)
        assert tcp.all_ok, tcp.broken[:3]
        assert set(tcp.by_backend()) == {b.name for b in fab.tenant(0).backends}
        assert not fab.udp_client(0, flows=30).unanswered

    try:
        t0 = time.perf_counter()
        _podman(podman_env, *run)
        r = put_state(name)
        applied = time.perf_counter() - t0
        assert all(s["ok"] for s in r.json()["services"]), r.text
        traffic()
        print(f"\ncontainer start to state applied (forwarding): {applied * 1000:.0f} ms")

        # A DaemonSet update: the pod goes (SIGTERM: the agent leaves XDP and its maps in place),
        # the node forwards without it, and the next pod adopts the pinned maps.
        _podman(podman_env, "rm", "-f", "-t", "10", name)
        traffic()
        run[run.index(name)] = names[1]
        _podman(podman_env, *run)
        r = put_state(names[1])
        assert all(s["ok"] for s in r.json()["services"]), r.text
        traffic()
    finally:
        for n in names:
            _podman(podman_env, "rm", "-f", "-t", "5", n, check=False)
