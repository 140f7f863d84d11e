"""What this LB node announces to its routers, and when (docs/bgp.md).

A VIP is announced while, and only while, this node's data plane holds its
services: the applied generation contains them, they are installed, and the
agent's XDP program is still the one on the trunk. Everything is withdrawn
when the node is drained, when the program is gone, and when the agent
stops cleanly; when the agent dies, BIRD dies with it (bird.py) and the
routers' BFD takes the node out.

The Speaker re-decides on every apply (Agent.on_applied) and every
`check_interval`: the XDP program can vanish behind the agent's back and
nothing else would tell it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from xdsr.agent.bird import Bird, BirdError, ProtocolInfo, render_announcements, render_config, write_atomically
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.netns import in_netns
from xdsr.model.bgp import BgpConfig, BgpPeerStatus, BgpStatus, normalize_prefix, summarize
from xdsr.model.checks import IPAddress

if TYPE_CHECKING:
    from xdsr.agent.core import Agent

log = logging.getLogger("xdsr.agent.bgp")

Announcements = dict[str, frozenset[IPAddress]]  # peer name -> VIPs


@dataclass(frozen=True)
class XdpWatch:
    """Is our program still the one on the trunk? Runs on the data-plane thread."""

    ifname: str
    netns: str | None
    ifindex: int
    prog_id: int
    flags: int

    def problem(self) -> str | None:
        """None while the program runs; else why the node must not announce."""
        try:
            with in_netns(self.netns):
                current = bpf.xdp_query_id(self.ifindex, self.flags)
        except (OSError, bpf.BpfError) as exc:
            return f"cannot query XDP on {self.ifname}: {exc}"
        if current == self.prog_id:
            return None
        if current == 0:
            return f"XDP program {self.prog_id} is no longer attached to {self.ifname}"
        return f"{self.ifname} runs XDP program {current}, not this agent's ({self.prog_id})"


def load_config(path: Path) -> BgpConfig:
    """Read `--bgp-config` (YAML or JSON); ValueError naming each bad field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML: {exc}") from None
    try:
        return BgpConfig.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'file'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ValueError(f"{path}: {errors}") from None


def check_config(cfg: BgpConfig, bird: Bird, node: str) -> None:
    """Before the data plane is touched: have BIRD parse the configuration the
    agent would give it (`bird -p`), in a scratch directory: the files of a
    BIRD already running for this node are not touched."""
    with tempfile.TemporaryDirectory(prefix="xdsr-bird-check-") as tmp:
        conf, include = Path(tmp) / "bird.conf", Path(tmp) / "announce.conf"
        include.write_text(render_announcements(cfg, {}))
        conf.write_text(render_config(cfg, include, node))
        bird.check(conf)


def wanted(cfg: BgpConfig, agent: Agent) -> Announcements:
    """Per peer, the VIPs whose services the data plane holds now, on the
    segments the peer carries, in the families it can take (from the pairs
    the agent counts on each apply: vips.py)."""
    held = list(agent.vips.held())
    out: Announcements = {}
    for name, peer in zip(cfg.peer_names(), cfg.peers, strict=True):
        out[name] = frozenset(
            vip for vip, seg in held if (not peer.segments or seg in peer.segments) and peer.carries(vip.version)
        )
    return out


class Speaker:
    """Keeps BIRD's announcements equal to what the node may announce now."""

    def __init__(
        self,
        cfg: BgpConfig,
        bird: Bird,
        agent: Agent,
        watch: XdpWatch | None,
        *,
        drain_file: Path | None = None,
        run_on_dp: Callable[[Callable[[], str | None]], asyncio.Future[str | None]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.bird = bird
        self.agent = agent
        self.watch = watch
        # A drain outlives agent restarts (not reboots: the state dir is tmpfs),
        # so a node taken out for maintenance stays out until undrained.
        self.drain_file = drain_file
        self.drained = drain_file is not None and drain_file.exists()
        self.stopping = False
        self.reason: str | None = None
        self.written: Announcements = {}  # what the include file holds (empty at launch)
        self.protocols: dict[str, ProtocolInfo] = {}
        self.bird_error: str | None = None
        self._run_on_dp = run_on_dp
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._up: dict[str, bool] = {}
        self._restarted_at = 0.0
        # wanted() at the held pairs' version: an apply that adds or removes
        # no VIP (a member change) costs no pass over the services.
        self._wanted: tuple[int, Announcements] | None = None

    # -- lifecycle -------------------------------------------------------

    def launch(self, node: str) -> None:
        """Write BIRD's configuration and an empty announcement file, and start
        BIRD. On the main thread (bird.py)."""
        paths = self.bird.paths
        if self.bird.answers():
            raise BirdError(f"a BIRD already answers on {paths.socket}: is another agent running as {node}?")
        paths.config.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(paths.config, render_config(self.cfg, paths.include, node))
        write_atomically(paths.include, render_announcements(self.cfg, {}))
        self.bird.start()

    async def start(self) -> None:
        await self.bird.wait_ready()
        self._task = asyncio.create_task(self._loop(), name="bgp")

    async def stop(self) -> None:
        """Withdraw everything, then shut BIRD down (a Cease to each peer)."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(BirdError, OSError):
            await self.sync()
        await self.bird.down()

    def kick(self) -> None:
        """Re-decide now (called after every apply)."""
        self._kick.set()

    async def set_drained(self, drained: bool) -> BgpStatus:
        """Drain: withdraw everything and keep forwarding what still arrives.
        Returns once BIRD has been told."""
        if drained != self.drained:
            log.info("bgp %s", "drain: withdrawing every VIP, still forwarding" if drained else "undrain")
        self.drained = drained
        self.keep_drain()
        await self.sync()
        return self.status()

    def keep_drain(self) -> None:
        if self.drain_file is None:
            return
        if self.drained:
            self.drain_file.parent.mkdir(parents=True, exist_ok=True)
            self.drain_file.touch()
        else:
            self.drain_file.unlink(missing_ok=True)

    # -- the loop --------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync()
            except (BirdError, OSError) as exc:
                if self.bird_error != str(exc):
                    log.error("bgp: %s", exc)
                self.bird_error = str(exc)
            except Exception:
                log.exception("bgp: sync failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.cfg.check_interval)
            self._kick.clear()

    async def _problem(self) -> str | None:
        if self.watch is None:
            return None
        if self._run_on_dp is not None:
            return await self._run_on_dp(self.watch.problem)
        return self.watch.problem()

    async def sync(self) -> None:
        async with self._lock:
            if not self.bird.running() and not self.stopping:
                await self._restart_bird()
            if self.stopping:
                want, reason = {}, "the agent is stopping"
            elif self.drained:
                want, reason = {}, "drained"
            else:
                reason = await self._problem()
                if reason is None and self.agent.generation == 0:
                    reason = "no desired state applied since the agent started"
                want = self._want() if reason is None else {}
            if reason != self.reason:
                if reason is not None:
                    log.warning("bgp withdrawing every VIP: %s", reason)
                elif self.reason is not None:
                    log.info("bgp announcing again (was: %s)", self.reason)
            self.reason = reason
            if want is not self.written and want != self.written:
                write_atomically(self.bird.paths.include, render_announcements(self.cfg, want))
                await self.bird.configure()
                self._log_changes(self.written, want)
                self.written = want
            self.protocols = await self.bird.protocols()
            self.bird_error = None
            self._log_sessions()
            self._publish()

    def _want(self) -> Announcements:
        version = self.agent.vips.version
        if self._wanted is None or self._wanted[0] != version:
            self._wanted = (version, wanted(self.cfg, self.agent))
        return self._wanted[1]

    def summary(self) -> str:
        """One line for the node's registration record, which the operator watches."""
        return summarize(self.status())

    def _publish(self) -> None:
        reg = self.agent.registration
        if reg is not None and not self.stopping:
            text = self.summary()
            if reg.record.bgp != text:
                reg.update(bgp=text)

    async def _restart_bird(self) -> None:
        rc = self.bird.proc.returncode if self.bird.proc else None
        now = time.monotonic()
        if now - self._restarted_at < 5.0:
            raise BirdError(f"BIRD exited ({rc}); restarting it at most every 5 s")
        self._restarted_at = now
        log.error("bird exited rc=%s: starting it again", rc)
        write_atomically(self.bird.paths.include, render_announcements(self.cfg, {}))
        self.written = {}
        self.bird.start()
        await self.bird.wait_ready()

    def _log_changes(self, old: Announcements, new: Announcements) -> None:
        for name in self.cfg.peer_names():
            before, after = old.get(name, frozenset()), new.get(name, frozenset())
            for vip in sorted(after - before, key=str):
                log.info("bgp announce peer=%s prefix=%s", name, normalize_prefix(vip))
            for vip in sorted(before - after, key=str):
                log.info("bgp withdraw peer=%s prefix=%s reason=%s", name, normalize_prefix(vip), self.reason or "-")

    def _log_sessions(self) -> None:
        for name in self.cfg.peer_names():
            p = self.protocols.get(name)
            up = p is not None and p.info.startswith("Established")
            if self._up.get(name) != up:
                if up:
                    log.info("bgp session up peer=%s", name)
                elif name in self._up:
                    log.warning("bgp session down peer=%s: %s", name, _error(p) or (p.info if p else "?"))
                self._up[name] = up

    # -- status ----------------------------------------------------------

    def session_up(self, name: str) -> bool:
        return self._up.get(name, False)

    def status(self) -> BgpStatus:
        peers = []
        written = self.written
        for name, peer in zip(self.cfg.peer_names(), self.cfg.peers, strict=True):
            p = self.protocols.get(name)
            up = self.session_up(name)
            state = (p.details.get("BGP state") or p.info.split()[0]) if p is not None and p.info else "unknown"
            peers.append(
                BgpPeerStatus(
                    name=name,
                    address=str(peer.address),
                    asn=peer.asn,
                    state=state,
                    up=up,
                    since=p.since if p else None,
                    error=None if up else (_error(p) or self.bird_error),
                    bfd=self.cfg.bfd.enabled,
                    announced=[
                        normalize_prefix(v) for v in sorted(written.get(name, ()), key=lambda a: (a.version, int(a)))
                    ],
                    exported=sum(p.exported.values()) if p is not None else None,
                )
            )
        every = _sorted({v for vs in written.values() for v in vs})
        if self.stopping:
            state = "stopped"
        elif self.drained:
            state = "drained"
        elif self.reason is not None:
            state = "withdrawn"
        else:
            state = "announcing"
        return BgpStatus(
            enabled=True,
            state=state,
            reason=self.reason,
            drained=self.drained,
            announced=[normalize_prefix(v) for v in every],
            peers=peers,
        )


def _error(p: ProtocolInfo | None) -> str | None:
    """Why a session is not up, in BIRD's words ("Bad peer AS", "Connection refused"...)."""
    if p is None:
        return None
    for key in ("Last error", "Error"):
        if p.details.get(key):
            return p.details[key]
    _, _, rest = p.info.partition(" ")
    return rest.strip() or None


def _sorted(vips: Iterable[IPAddress]) -> list[IPAddress]:
    return sorted(vips, key=lambda a: (a.version, int(a)))
