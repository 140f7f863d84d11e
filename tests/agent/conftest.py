"""Fixtures for the agent's tests: a lab fabric shared by the package, and
agents run as real `xdsr agent` processes against its LBN trunk, each with
its own pins, state directory and token, all removed even on failure."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IS_ROOT
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric, wait_until
from xdsr.local.process import Child, free_port

XDSR = [sys.executable, "-m", "xdsr.cli"]


@pytest.fixture(scope="package")
def fab() -> Iterator[Fabric]:
    """One LBN, one tenant with three backends, IPv4 and IPv6."""
    if not IS_ROOT:
        pytest.skip("needs root: builds network namespaces and loads XDP programs")
    spec = FabricSpec(n_lbns=1, ipv6=True, prefix="xag", tenants=(TenantSpec(n_backends=3),))
    with build_fabric(spec) as fabric:
        yield fabric


class AgentProcess:
    """One `xdsr agent` process on the fabric's LBN trunk."""

    def __init__(self, fab: Fabric, pin_dir: Path, workdir: Path, name: str, extra: list[str]) -> None:
        self.fab = fab
        self.pin_dir = pin_dir
        self.workdir = workdir
        self.name = name
        self.extra = extra
        self.token = secrets.token_hex(16)
        self.token_file = workdir / "token"
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)
        self.state_dir = workdir / "state"
        self.ns, self.ifname, self.mac = fab.lbn_trunk(0)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Plain HTTP unless a test serves TLS (test_tls.py): use_tls() replaces both.
        self.transport = ["--insecure-http"]
        self.tls_context = None
        self.proc: Child | None = None
        self.starts = 0
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def use_tls(self, args: list[str], context: ssl.SSLContext) -> None:
        """Serve mutual TLS with `args` (--tls-*); this client connects with `context`."""
        self.transport = args
        self.tls_context: ssl.SSLContext | None = context
        self.url = f"https://127.0.0.1:{self.port}"
        self.http.close()
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            verify=context,
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / f"agent-{self.starts}.log"

    def start(self, timeout: float = 15.0, extra: list[str] | None = None) -> AgentProcess:
        assert self.proc is None or not self.proc.running, "already running"
        self.starts += 1
        cmd = [
            *XDSR, "agent", "--iface", self.ifname, "--netns", self.ns, "--name", self.name,
            "--listen", f"127.0.0.1:{self.port}", "--token-file", str(self.token_file),
            "--pin-dir", str(self.pin_dir), "--state-dir", str(self.state_dir), "--max-services", "64",
            *self.transport, *self.extra, *(extra or []),
        ]  # fmt: skip
        self.proc = Child(f"agent {self.name}", cmd, log_path=self.log_path).start()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            return self.http.get("/healthz").status_code == 200

        wait_until(up, timeout, what="agent /healthz", ignore=(httpx.TransportError,))
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.signal(sig)
        rc = self.proc.wait(15)
        assert rc is not None
        return rc

    def kill(self) -> None:
        """kill -9: no shutdown code runs at all."""
        self.signal(signal.SIGKILL)

    def stop(self) -> int:
        return self.signal(signal.SIGTERM)

    # -- the API ---------------------------------------------------------

    def put(self, doc: dict[str, Any]) -> httpx.Response:
        return self.http.put("/v1/state", json=doc)

    def state(self) -> dict[str, Any]:
        r = self.http.get("/v1/state")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def report(self, service_id: str) -> dict[str, Any]:
        return next(s for s in self.state()["services"] if s["id"] == service_id)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample: (name, sorted labels) -> value."""
        r = httpx.get(self.url + "/metrics", timeout=10)
        assert r.status_code == 200, r.text
        out = {}
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of name whose labels include `labels`."""
        return sum(v for (n, lv), v in self.metrics().items() if n == name and set(labels.items()) <= set(lv))

    # -- what the kernel holds -------------------------------------------

    def dp_show(self) -> dict[str, Any]:
        import json

        proc = subprocess.run(
            [*XDSR, "dp", "show", "--json", "--pin-dir", str(self.pin_dir)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def installed(self) -> dict[tuple[str, int, str], list[tuple[str, int, int]]]:
        """(vip, port, protocol) -> [(mac, vlan, weight)] read from the maps."""
        from xdsr.dataplane.loader import Dataplane
        from xdsr.dataplane.state import installed

        with Dataplane.open(self.pin_dir) as dp:
            return {
                (str(s.service.key.vip), s.service.key.port, s.service.key.protocol): [
                    (b.mac, b.vlan, b.weight) for b in s.service.backends
                ]
                for s in installed(dp)
            }

    def table_ids(self) -> dict[tuple[str, int, str], int]:
        return {(s["vip"], s["port"], s["protocol"]): s["table_offset"] for s in self.dp_show()["services"]}

    def close(self) -> None:
        if self.proc is not None and self.proc.running:
            self.kill()
        self.http.close()


@pytest.fixture
def agent_factory(fab: Fabric, tmp_path: Path) -> Iterator[Any]:
    """agent_factory(name=..., extra=[...]) -> a not yet started AgentProcess.

    Teardown kills it, detaches the XDP program from the trunk and removes
    the pins, whatever the test did."""
    from xdsr.dataplane.loader import Dataplane, DataplaneError, ensure_bpffs, remove_pins

    pin = Path(f"/sys/fs/bpf/xdsr-test-agent-{uuid.uuid4().hex[:8]}")
    ensure_bpffs(pin)
    made: list[AgentProcess] = []

    def make(name: str = "lbn0", extra: list[str] | None = None) -> AgentProcess:
        a = AgentProcess(fab, pin, tmp_path, name, list(extra or []))
        made.append(a)
        return a

    try:
        yield make
    finally:
        for a in made:
            a.close()
        ns, ifname, _ = fab.lbn_trunk(0)
        if Dataplane.exists(pin):
            with Dataplane.open(pin) as dp, contextlib.suppress(DataplaneError, LookupError):
                dp.detach(ifname, netns=ns)
        remove_pins(pin)


@pytest.fixture
def etcd() -> Iterator[Any]:
    """A real etcd of the test's own, stopped and removed after it."""
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    from xdsr.local.etcd import EtcdServer

    with EtcdServer() as server:
        yield server


@pytest.fixture
def agent(agent_factory: Any) -> AgentProcess:
    """A running agent that confirms resolved MACs every 2 s."""
    return agent_factory(extra=["--resolve-interval", "2"]).start()  # type: ignore[no-any-return]


def services_doc(
    fab: Fabric, *, by_address: bool = False, ipv6: bool | None = None, protocols: tuple[str, ...] = ("tcp", "udp")
) -> list[dict[str, Any]]:
    """The fabric's services as RuleServices: members with their MACs, or
    (by_address) with their address only, for the agent to resolve."""
    t = fab.tenant(0)
    out = []
    for s in fab.services():
        v6 = ":" in s.vip
        if (ipv6 is not None and v6 != ipv6) or s.proto not in protocols:
            continue
        members = []
        for b, info in zip(s.backends, t.backends, strict=True):
            m: dict[str, Any] = {"id": b.name, "vlan": b.vid}
            if by_address:
                m["address"] = info.ip6 if v6 else info.ip
            else:
                m["mac"] = b.mac
            members.append(m)
        out.append(
            {
                "id": f"lb1/{s.proto}{'6' if v6 else '4'}",
                "vip": s.vip,
                "port": s.port,
                "protocol": s.proto,
                "segment": {"type": "vlan", "id": s.vid},
                "backends": members,
            }
        )
    return out
