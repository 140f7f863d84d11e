"""A whole xdsr deployment on one machine, as separate processes: etcd, the
API server, the operator, and one agent per LB node of a lab fabric.

Each component can be stopped, killed and started again on its own, which
is what the fault tests do; the demo and the control-plane benchmark use it
as is. Every process runs in its own session and is killed on close().
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import yaml

from xdsr.local.etcd import EtcdServer
from xdsr.local.process import Child, free_port

if TYPE_CHECKING:
    from xdsr.lab import Fabric

log = logging.getLogger("xdsr.cluster")


class Component(Child):
    """One xdsr process of the cluster, healthy once its health_url answers."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, health_url: str | None = None) -> None:
        super().__init__(name, cmd, log_path=log_path, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.health_url = health_url

    def start(self, timeout: float = 20.0) -> Self:
        if self.running:
            return self
        super().start()
        if self.health_url:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        self.wait_ready(self._healthy, timeout, what="healthy")

    def _healthy(self) -> bool:
        assert self.health_url is not None
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.health_url, timeout=1.0).status_code < 500
        return False


@dataclass
class Tokens:
    admin: str
    agents: str
    projects: dict[str, str] = field(default_factory=dict)  # project id -> its token


def _xdsr(*args: str) -> list[str]:
    return [sys.executable, "-m", "xdsr.cli", *args]


class LocalCluster:
    """etcd + API server + operator + agents for the given LB nodes.

    lbns: (name, netns, interface) per LB node; pin_root: a bpffs directory
    under which each agent pins its maps (the lab's own, so it is removed
    with the lab).
    """

    def __init__(
        self,
        lbns: list[tuple[str, str, str]],
        pin_root: Path,
        projects: tuple[str, ...] = ("demo",),
        group_size: int = 3,
        resync: float = 2.0,
        store: str | None = None,  # another store than its own etcd (e.g. kubernetes:KUBECONFIG)
        workdir: Path | None = None,
        subnets: list[dict[str, object]] | None = None,
        health_sources: dict[str, list[str]] | None = None,
        agent_args: dict[str, list[str]] | None = None,  # more `xdsr agent` options per node (e.g. --bgp-config)
    ) -> None:
        self.lbns = list(lbns)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="xdsr-cluster-"))
        self._own_workdir = workdir is None
        self.tokens = Tokens(
            admin=secrets.token_urlsafe(16),
            agents=secrets.token_urlsafe(16),
            projects={p: secrets.token_urlsafe(16) for p in projects},
        )
        tokens_file = self.workdir / "tokens.yaml"
        entries = [{"token": self.tokens.admin, "project_id": "admin", "admin": True}]
        entries += [{"token": t, "project_id": p, "admin": False} for p, t in self.tokens.projects.items()]
        tokens_file.write_text(yaml.safe_dump({"tokens": entries}))
        agent_token = self.workdir / "agent-token"
        agent_token.write_text(self.tokens.agents)
        agent_token.chmod(0o600)
        tokens_file.chmod(0o600)

        networks_file = self.workdir / "networks.yaml"
        networks_file.write_text(yaml.safe_dump({"subnets": subnets or []}))
        self.etcd = EtcdServer(self.workdir / "etcd")
        # store: another store than the cluster's own etcd (e.g. kubernetes:KUBECONFIG); etcd then stays down
        self.own_etcd = store is None
        self.store = store or self.etcd.endpoint
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.apiserver = Component(
            "apiserver",
            _xdsr("apiserver", "--store", self.store, "--listen", f"127.0.0.1:{self.api_port}",
                  "--tokens-file", str(tokens_file), "--networks-file", str(networks_file)),
            self.workdir / "apiserver.log",
            health_url=self.api_url + "/",
        )  # fmt: skip
        self.operator_metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
        self.operator = Component(
            "operator",
            _xdsr("-v", "operator", "--store", self.store, "--token-file", str(agent_token), "--insecure-http",
                  "--group-size", str(group_size), "--resync", str(resync),
                  "--metrics-listen", self.operator_metrics_url.removeprefix("http://").removesuffix("/metrics")),
            self.workdir / "operator.log",
        )  # fmt: skip
        self.agents: dict[str, Component] = {}
        self.agent_urls: dict[str, str] = {}
        self.pin_dirs: dict[str, Path] = {}
        for name, netns, iface in lbns:
            port = free_port()
            pin = pin_root / name
            self.pin_dirs[name] = pin
            self.agent_urls[name] = f"http://127.0.0.1:{port}"
            self.agents[name] = Component(
                f"agent {name}",
                _xdsr("-v", "agent", "--iface", iface, "--netns", netns, "--name", name,
                      "--listen", f"127.0.0.1:{port}", "--store", self.store,
                      "--token-file", str(agent_token), "--pin-dir", str(pin), "--insecure-http",
                      "--state-dir", str(self.workdir / "agent-state"),
                      *(a for src in (health_sources or {}).get(name, ()) for a in ("--health-source", src)),
                      *(agent_args or {}).get(name, ())),
                self.workdir / f"agent-{name}.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            )  # fmt: skip

    @classmethod
    def on_fabric(cls, fab: Fabric, health_checks: bool = True, **kwargs: Any) -> LocalCluster:
        """One agent per LB node of a lab fabric (lbn0, lbn1, ...), pinning
        under the lab's bpffs directory (removed with the lab); with
        health_checks, each checks backends from its own address on every
        tenant's backend VLAN (Fabric.health_sources)."""
        nodes = [(f"lbn{i}", fab.lbn_trunk(i).netns, fab.lbn_trunk(i).ifname) for i in range(len(fab.lbns))]
        sources = {name: fab.health_sources(i) for i, (name, _, _) in enumerate(nodes)} if health_checks else None
        return cls(nodes, fab.lab.bpffs_dir(), health_sources=sources, **kwargs)

    def start(self) -> LocalCluster:
        try:
            if self.own_etcd:
                self.etcd.start()
            self.apiserver.start()
            self.operator.start()
            for a in self.agents.values():
                a.start()
        except BaseException:
            # `with` never calls __exit__ when __enter__ raises: clean up here.
            self.close()
            raise
        return self

    def close(self) -> None:
        for c in [*self.agents.values(), self.operator, self.apiserver]:
            try:
                c.stop()
            except Exception:
                log.exception("stopping %s", c.name)
        if self.own_etcd:
            self.etcd.stop()
        if self._own_workdir and not os.environ.get("XDSR_KEEP_CLUSTER_LOGS"):
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        """Every component's recent log, for a failing test's report."""
        parts = [f"== {c.name}\n{c.log_tail()}" for c in [self.apiserver, self.operator, *self.agents.values()]]
        return "\n".join(parts)

    def client(self, project: str | None = None) -> httpx.Client:
        """An HTTP client for the API with the project's (or the admin) token."""
        token = self.tokens.projects[project] if project else self.tokens.admin
        return httpx.Client(base_url=self.api_url, headers={"X-Auth-Token": token}, timeout=10.0)
