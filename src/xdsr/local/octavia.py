"""The real Octavia API and driver agent as local processes, with xdsr as
their provider: for tests/octavia and the latency benchmark
(xdsr.bench.octavia).

No Keystone, Neutron, RabbitMQ or MySQL: `auth_strategy = noauth` (the
project comes from the X-Project-Id header, every caller is admin), a SQLite
file (Octavia's migrations cannot run on SQLite, so the schema comes from
SQLAlchemy's metadata.create_all plus the lookup tables, as Octavia's own
functional tests do), and the no-op network, compute, amphora and
certificate drivers. See /docs/octavia.md.

    with LocalOctavia(xdsr_url, token) as octavia:
        octavia.url                      # http://127.0.0.1:PORT
        octavia.session(project)         # httpx.Client with X-Project-Id

Both processes run in their own session and are stopped by process group
id on close(), which always runs (context manager, or call it yourself).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import httpx

from xdsr.local.process import Child, free_port


def init_db(path: str | Path) -> None:
    """Octavia's schema and lookup tables in a new SQLite file."""
    import sqlalchemy
    from octavia.common import constants
    from octavia.db import base_models, models
    from sqlalchemy import orm

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    base_models.BASE.metadata.create_all(engine)
    lookups = [
        (constants.SUPPORTED_PROVISIONING_STATUSES, models.ProvisioningStatus),
        (constants.SUPPORTED_HEALTH_MONITOR_TYPES, models.HealthMonitorType),
        (constants.SUPPORTED_LB_ALGORITHMS, models.Algorithm),
        (constants.SUPPORTED_PROTOCOLS, models.Protocol),
        (constants.SUPPORTED_OPERATING_STATUSES, models.OperatingStatus),
        (constants.SUPPORTED_SP_TYPES, models.SessionPersistenceType),
        (constants.SUPPORTED_AMPHORA_ROLES, models.AmphoraRoles),
        (constants.SUPPORTED_LB_TOPOLOGIES, models.LBTopology),
        (constants.SUPPORTED_VRRP_AUTH, models.VRRPAuthMethod),
        (constants.SUPPORTED_L7RULE_TYPES, models.L7RuleType),
        (constants.SUPPORTED_L7RULE_COMPARE_TYPES, models.L7RuleCompareType),
        (constants.SUPPORTED_L7POLICY_ACTIONS, models.L7PolicyAction),
        (constants.SUPPORTED_CLIENT_AUTH_MODES, models.ClientAuthenticationMode),
    ]
    with orm.Session(engine) as session, session.begin():
        for names, model in lookups:
            session.add_all(model(name=n) for n in names)
        # The placeholders deleted flavors and zones point at.
        session.add(
            models.FlavorProfile(
                id=constants.NIL_UUID, name="DELETED-PLACEHOLDER", provider_name=constants.DELETED, flavor_data="{}"
            )
        )
        session.flush()
        session.add(
            models.Flavor(
                id=constants.NIL_UUID, flavor_profile_id=constants.NIL_UUID, name="DELETED-PLACEHOLDER", enabled=False
            )
        )
        session.add(
            models.AvailabilityZoneProfile(
                id=constants.NIL_UUID,
                name="DELETED-PLACEHOLDER",
                provider_name=constants.DELETED,
                availability_zone_data="{}",
            )
        )
        session.flush()
        session.add(
            models.AvailabilityZone(
                availability_zone_profile_id=constants.NIL_UUID, name=constants.NIL_UUID, enabled=False
            )
        )
    engine.dispose()


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed: pip install 'xdsr[octavia]'")
    return found


class LocalOctavia:
    def __init__(
        self,
        xdsr_url: str,
        xdsr_token: str,
        *,
        workdir: Path | None = None,
        status_interval: float = 1.0,
        stats_interval: float = 1.0,
        apply_timeout: float = 30.0,
        observe_timeout: float = 60.0,
        debug: bool = False,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="xdsr-octavia-"))
        self._own_workdir = workdir is None
        # Unix socket paths must stay under 108 bytes: a short directory of their own.
        self.sockdir = Path(tempfile.mkdtemp(prefix="xo-", dir="/tmp"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = self.workdir / "octavia.db"
        self.spool = self.workdir / "spool"
        token_file = self.workdir / "xdsr-token"
        token_file.write_text(xdsr_token)
        token_file.chmod(0o600)
        self.conf = self.workdir / "octavia.conf"
        self.conf.write_text(
            textwrap.dedent(f"""\
            [DEFAULT]
            debug = {debug}

            [api_settings]
            bind_host = 127.0.0.1
            bind_port = {self.port}
            auth_strategy = noauth
            enabled_provider_drivers = xdsr:The xdsr L2 direct server return load balancer
            default_provider_driver = xdsr

            [database]
            connection = sqlite:///{self.db}
            # sqlalchemy 2 refuses pool_timeout for SQLite: set it empty.
            pool_timeout =

            [controller_worker]
            network_driver = network_noop_driver
            compute_driver = compute_noop_driver
            amphora_driver = amphora_noop_driver

            [certificates]
            cert_manager = noop_cert_manager

            [driver_agent]
            status_socket_path = {self.sockdir}/status.sock
            stats_socket_path = {self.sockdir}/stats.sock
            get_socket_path = {self.sockdir}/get.sock
            enabled_provider_agents = xdsr

            [xdsr]
            api_url = {xdsr_url}
            token_file = {token_file}
            spool_dir = {self.spool}
            status_interval = {status_interval}
            stats_interval = {stats_interval}
            apply_timeout = {apply_timeout}
            observe_timeout = {observe_timeout}
            neutron = false
            """)
        )
        self.procs: dict[str, Child] = {}

    def _child(self, name: str) -> Child:
        log = self.workdir / f"{name}.log"
        argv = [_bin(f"octavia-{name}"), "--config-file", str(self.conf), "--log-file", str(log)]
        return Child(f"octavia {name}", argv, log_path=log, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    # --- lifecycle ---

    def start(self, timeout: float = 60.0) -> LocalOctavia:
        try:
            # All three at once: each spends seconds importing Octavia, and
            # neither server touches the database before its first request.
            init = subprocess.Popen(
                [sys.executable, "-m", "xdsr.local.octavia", "init-db", str(self.db)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for name in ("driver-agent", "api"):
                self.procs[name] = self._child(name).start()
            out, _ = init.communicate(timeout=timeout)
            if init.returncode:
                raise RuntimeError(f"creating Octavia's database failed:\n{out.decode(errors='replace')}")
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        sockets = [self.sockdir / f"{s}.sock" for s in ("status", "stats", "get")]

        def ready() -> bool:
            if self.procs["driver-agent"].poll() is not None:
                raise RuntimeError(f"octavia driver-agent exited with {self.procs['driver-agent'].returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/", timeout=1.0).status_code != 200:
                    return False
                return all(s.exists() for s in sockets) and (self.spool / "wake.sock").exists()
            return False

        try:
            self.procs["api"].wait_ready(ready, timeout, interval=0.1)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}\n{self.logs()}") from None

    def close(self) -> None:
        # By process group: the driver agent forks its listeners and provider
        # agents, the group holds them all. The driver agent waits for its
        # listeners' request timeouts on SIGTERM; nothing here needs a
        # graceful stop beyond a moment.
        for name in ("api", "driver-agent"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.stop(grace=3.0)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        if self._own_workdir and not os.environ.get("XDSR_KEEP_OCTAVIA_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalOctavia:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- use ---

    def session(self, project: str = "demo", timeout: float = 30.0) -> httpx.Client:
        """Plain HTTP to Octavia's API as a project (noauth: X-Project-Id)."""
        return httpx.Client(base_url=self.url, headers={"X-Project-Id": project}, timeout=timeout)

    def openstack(self, project: str = "demo") -> Any:
        """An openstacksdk connection to this Octavia (no Keystone)."""
        import openstack

        conn = openstack.connection.Connection(
            auth_type="none", auth={"endpoint": "http://unused"}, load_balancer_endpoint_override=self.url
        )
        conn.session.additional_headers = {"X-Project-Id": project}
        return conn

    def logs(self, n: int = 4000) -> str:
        parts = []
        for name in ("api", "driver-agent"):
            path = self.workdir / f"{name}.log"
            with contextlib.suppress(OSError):
                parts.append(f"== octavia {name}\n{path.read_text(errors='replace')[-n:]}")
        return "\n".join(parts)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "init-db":
        init_db(sys.argv[2])
    else:
        sys.exit("usage: python -m xdsr.local.octavia init-db PATH")
