"""Starting and stopping an agent: `xdsr agent` calls run().

Order matters: the listening socket is bound first (a busy port fails
before anything touches the kernel), then the data plane is created or
adopted and attached (forwarding resumes with whatever tables are pinned),
then the API serves. On SIGTERM/SIGINT the API stops, the lease is revoked
and the agent exits; the XDP program and the pinned maps stay, so the node
keeps forwarding with its last tables (`xdsr dp detach IFACE` removes the
program).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
import stat
import threading
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import prometheus_client
import uvicorn
from fastapi import FastAPI

import xdsr
from xdsr.agent.api import create_app
from xdsr.agent.bgp import Speaker, XdpWatch, check_config, load_config
from xdsr.agent.bird import Bird, BirdError, BirdPaths
from xdsr.agent.core import Agent, AgentConfig
from xdsr.agent.health import HealthChecker, IPAddress, SegmentKey
from xdsr.agent.ready import Readiness, create_health_app
from xdsr.agent.registration import Registration
from xdsr.agent.resolver import Resolver
from xdsr.agent.settings import AgentSettings
from xdsr.dataplane.loader import MODES, Dataplane, DataplaneError
from xdsr.dataplane.netns import link
from xdsr.dataplane.owner import acquire
from xdsr.model import checks
from xdsr.model.bgp import BgpConfig
from xdsr.model.group import LbnRecord
from xdsr.store.connect import is_kubernetes

log = logging.getLogger("xdsr.agent")

DEFAULT_STATE_DIR = Path("/run/xdsr/agent")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MIN_TOKEN_LEN = 16


class StartupError(Exception):
    """The agent cannot start; the message says why. exit_code 2: bad
    arguments or files, 1: the system refused."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# What run() takes: every option of the agent, defined once (settings.py).
Options = AgentSettings

# The cyclic garbage collector's first threshold (allocations less
# deallocations between two collections of the youngest generation; Python's
# default is 700). A node holding a group keeps hundreds of thousands of
# objects (every member of every service) and a full state allocates millions
# more at once: with the default, one resync of 4096 services ran the
# collector over a thousand times, a quarter of its CPU. Nearly everything the
# agent allocates is freed by reference counting; cycles still get collected.
GC_THRESHOLD = 10_000


def parse_listen(listen: str, flag: str = "--listen") -> tuple[str, int]:
    """Parse "127.0.0.1:9101", "[::1]:9101" or ":9101" (all addresses) into (host, port)."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise StartupError(f"{flag} {listen!r}: expected ADDR:PORT", 2)
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise StartupError(f"{flag} {listen!r}: {host!r} is not an IP address", 2) from None
    return host, int(port_s)


def parse_health_sources(specs: tuple[str, ...]) -> dict[SegmentKey, list[IPAddress]]:
    """["100=10.1.0.250", "100=fd00:1::fa", "vxlan:5001=10.9.0.250"] -> {100: [...], ("vxlan", 5001): [...]}."""
    out: dict[SegmentKey, list[IPAddress]] = {}
    for spec in specs:
        seg_s, sep, addr_s = spec.partition("=")
        kind, colon, ident_s = seg_s.strip().rpartition(":")
        kind = kind if colon else "vlan"
        if not sep or not ident_s.isdigit() or kind not in checks.SEGMENT_TYPES:
            expected = "VLAN=ADDRESS (VLAN 0-4094), vxlan:VNI=ADDRESS or geneve:VNI=ADDRESS"
            raise StartupError(f"--health-source {spec!r}: expected {expected}", 2)
        try:
            checks.segment(kind, int(ident_s))
        except ValueError as exc:
            raise StartupError(f"--health-source {spec!r}: {exc}", 2) from None
        try:
            addr = ipaddress.ip_address(addr_s.strip())
        except ValueError:
            raise StartupError(f"--health-source {spec!r}: {addr_s!r} is not an IP address", 2) from None
        if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
            raise StartupError(f"--health-source {spec!r}: {addr} is not a unicast address", 2)
        key: SegmentKey = int(ident_s) if kind == "vlan" else (kind, int(ident_s))
        have = out.setdefault(key, [])
        if any(a.version == addr.version for a in have):
            where = f"VLAN {ident_s}" if kind == "vlan" else f"{kind} {ident_s}"
            raise StartupError(f"--health-source {spec!r}: {where} already has an IPv{addr.version} source", 2)
        have.append(addr)
    return out


def read_token(path: Path) -> bytes:
    try:
        st = path.stat()
        token = path.read_bytes().strip()
    except OSError as exc:
        raise StartupError(f"--token-file {path}: {exc.strerror}", 2) from None
    if len(token) < MIN_TOKEN_LEN:
        raise StartupError(f"--token-file {path}: the token must be at least {MIN_TOKEN_LEN} characters", 2)
    if b"\n" in token or b" " in token:
        raise StartupError(f"--token-file {path}: the token must be one word on one line", 2)
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is accessible to group/others (mode %o): chmod 600 it", path, st.st_mode & 0o777)
    return token


def _bind(host: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _endpoint(host: str, port: int, scheme: str = "http") -> str:
    addr = ipaddress.ip_address(host)
    if addr.is_unspecified:
        return f"{scheme}://{socket.gethostname()}:{port}"
    return f"{scheme}://[{host}]:{port}" if addr.version == 6 else f"{scheme}://{host}:{port}"


def check_tls(opts: Options) -> None:
    """TLS, or plain HTTP asked for by name: never plain HTTP by default."""
    if opts.tls is None:
        if not opts.insecure_http:
            raise StartupError(
                "the API is served over mutual TLS: give --tls-cert, --tls-key and --tls-client-ca "
                "(or --insecure-http for plain HTTP on a lab or a single machine)",
                2,
            )
        return
    if opts.insecure_http:
        raise StartupError("--insecure-http and --tls-* exclude each other", 2)
    try:
        opts.tls.check()
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"--tls-cert/--tls-key/--tls-client-ca: {exc}", 2) from None


def _bgp_setup(opts: Options) -> tuple[BgpConfig, Bird] | None:
    """Read and check the BGP configuration, BIRD's parse included."""
    if opts.bgp_config is None:
        if opts.drain:
            raise StartupError("--drain withdraws BGP announcements: it needs --bgp-config", 2)
        return None
    try:
        cfg = load_config(opts.bgp_config)
    except ValueError as exc:
        raise StartupError(f"--bgp-config {exc}", 2) from None
    bird = Bird(cfg.bird, BirdPaths.under(opts.state_dir, opts.name), opts.netns)
    try:
        check_config(cfg, bird, opts.name)
    except (BirdError, OSError) as exc:
        raise StartupError(f"--bgp-config {opts.bgp_config}: {exc}", 2) from None
    return cfg, bird


def _import_meanwhile(module: str) -> None:
    """Import a module on another thread, while this one goes on: its first
    use then finds it imported (or waits for the import to end). A failure
    is left for that use to report."""

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    threading.Thread(target=load, name=f"import {module}", daemon=True).start()


def run(opts: Options) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the exit status."""
    if opts.store:
        # The store's client (aiohttp: about a tenth of a second to import)
        # is imported while the kernel creates the maps and verifies the
        # program: both are on the way to the node's registration, which is
        # when the operator sends a new node what to forward.
        _import_meanwhile("xdsr.store.kubernetes" if is_kubernetes(opts.store) else "xdsr.store.etcd")
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    # One sample per counter, not two: the *_created series mean nothing
    # for counters read from the kernel.
    prometheus_client.disable_created_metrics()
    if not NAME_RE.match(opts.name):
        raise StartupError(f"--name {opts.name!r}: letters, digits, '.', '_', '-' (up to 63)", 2)
    check_tls(opts)
    token = read_token(opts.token_file)
    sources = parse_health_sources(opts.health_sources)
    host, port = parse_listen(opts.listen)
    probe_addr = parse_listen(opts.health_listen, "--health-listen") if opts.health_listen else None
    speaker_setup = _bgp_setup(opts)  # a bad BGP configuration fails before the kernel is touched
    sock = _bind(host, port)
    try:
        probe_sock = _bind(*probe_addr) if probe_addr else None
    except StartupError:
        sock.close()
        raise
    socks = [s for s in (sock, probe_sock) if s is not None]
    try:
        # Held for the agent's life: a second agent or `xdsr dp apply` on
        # these maps is refused instead of replacing the tables.
        owner = acquire(opts.pin_dir, "a second xdsr agent")
    except (DataplaneError, OSError) as exc:
        for s in socks:
            s.close()
        raise StartupError(str(exc)) from None
    dp: Dataplane | None = None
    resolver: Resolver | None = None
    health: HealthChecker | None = None
    try:
        dp = Dataplane.create_or_open(opts.pin_dir, opts.max_services)
        att = dp.attach(opts.iface, netns=opts.netns, mode=opts.mode, tunnel=opts.tunnel)
        trunk = link(opts.iface, opts.netns)
        resolver = Resolver.open(opts.iface, opts.netns, trunk.mac)
        health = HealthChecker.open(opts.iface, opts.netns, trunk.mac, sources, endpoint=opts.tunnel)
    except Exception as exc:
        for s in socks:
            s.close()
        if health is not None:
            health.close()
        if resolver is not None:
            resolver.close()
        if dp is not None:
            dp.close()
        owner.undo()  # a failed start leaves no maps and no directory it made
        raise StartupError(f"cannot start the data plane on {opts.iface}: {exc}") from None
    watch = XdpWatch(opts.iface, opts.netns, trunk.index, att.prog_id, MODES[att.mode])

    registration = None
    endpoint = opts.advertise or _endpoint(host, port, "https" if opts.tls else "http")
    if opts.store:
        from xdsr.store.connect import open_store

        record = LbnRecord(
            name=opts.name,
            endpoint=endpoint,
            group=opts.group,
            started_at=time.time(),
            version=xdsr.__version__,
            max_services=dp.max_services,  # what the maps hold: the operator places no more here
            slot_chunks=dp.slot_chunks,
            backend_slots=dp.backend_slots,
        )
        store = open_store(opts.store, component="agent")
        registration = Registration(store, record, ttl=opts.lease_ttl, interval=opts.lease_ttl / 3)

    config = AgentConfig(
        name=opts.name,
        iface=opts.iface,
        netns=opts.netns,
        resolve_interval=opts.resolve_interval,
        neighbor_file=opts.state_dir / f"{opts.name}.neighbors.json",
        verify_interval=opts.verify_interval,
        underlay_next_hop=ipaddress.ip_address(opts.underlay_next_hop) if opts.underlay_next_hop else None,
    )
    agent = Agent(config, dp, resolver, registration=registration, health=health)
    agent.adopt()
    # What is made by now (modules, classes, the data plane) lives as long as
    # the process: out of the collector's way.
    gc.freeze()
    speaker = None
    if speaker_setup is not None:
        bgp_cfg, bird = speaker_setup
        drain_file = opts.state_dir / f"{opts.name}.drained"
        speaker = Speaker(bgp_cfg, bird, agent, watch, drain_file=drain_file, run_on_dp=agent._dp)
        if opts.drain:
            speaker.drained = True
            speaker.keep_drain()
        agent.bgp = speaker
        try:
            speaker.launch(opts.name)  # here, on the main thread: BIRD dies with the agent (bird.py)
        except (BirdError, OSError) as exc:
            for s in socks:
                s.close()
            raise StartupError(f"cannot start BIRD: {exc}") from None

    probes: _ProbeServer | None = None
    if probe_sock is not None:
        ready = Readiness(agent, watch, needs_generation=registration is not None, stopping=lambda: server.should_exit)
        probes = _ProbeServer(
            uvicorn.Config(create_health_app(ready), log_config=None, access_log=False, lifespan="off")
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        if speaker is not None:
            await speaker.start()
            agent.on_applied = speaker.kick
        probe_task = None
        if probes is not None:
            assert probe_sock is not None
            probe_task = asyncio.create_task(probes.serve(sockets=[probe_sock]), name="probes")
        log.info(
            "agent started name=%s iface=%s netns=%s trunk_mac=%s prog_id=%d mode=%s listen=%s:%d endpoint=%s "
            "store=%s pid=%d",
            opts.name,
            opts.iface,
            opts.netns or "-",
            trunk.mac,
            att.prog_id,
            att.mode,
            host,
            port,
            endpoint,
            opts.store or "-",
            os.getpid(),
        )
        try:
            yield
        finally:
            if probes is not None and probe_task is not None:
                probes.should_exit = True
                await probe_task
            if speaker is not None:
                agent.on_applied = None
                await speaker.stop()  # withdraw first: the routers move the traffic while the node still forwards
            await agent.stop()
            log.info("agent stopped name=%s: the XDP program stays attached and keeps forwarding", opts.name)

    app = create_app(agent, token, lifespan)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            server_header=False,
            **(opts.tls.uvicorn() if opts.tls else {}),  # type: ignore[arg-type]
        )
    )

    # uvicorn catches SIGTERM/SIGINT while it serves and raises them again
    # once it has shut down; with these handlers that last raise is a no-op
    # and the agent exits 0 after a clean shutdown.
    def _stop(signum: int, frame: object) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        owner.release()
    return 0 if server.started else 1


class _ProbeServer(uvicorn.Server):
    """The probe listener: beside the API's server, which owns SIGTERM/SIGINT."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
