"""Drift: what the kernel holds against what the agent believes it holds.

After every apply (and on adopting the maps) the agent remembers the digest
of the live service index, which names every service, its table and where
they are. On every resync (the operator re-sending the state it already
applied) and every `interval` seconds it reads the digest again: if it
differs, something else changed the tables (a `dp apply` that got past the
owner lock, a hand edit, a restore of the pins) and the agent re-applies
its desired state, counts the repair (`xdsr_dataplane_drift_repairs_total`)
and logs it. Without a desired state yet (after a restart, before the
operator's first PUT) there is nothing to repair to: the new state is taken
as what the kernel holds and logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from xdsr.dataplane.libbpf import BpfError
from xdsr.dataplane.loader import Dataplane, DataplaneError
from xdsr.dataplane.state import index_digest, installed

if TYPE_CHECKING:
    from xdsr.agent.core import Agent

log = logging.getLogger("xdsr.agent")


class DriftGuard:
    """The digest the agent expects. Its methods touch the maps: call them
    on the agent's data-plane thread."""

    def __init__(self) -> None:
        self.expected: bytes | None = None
        self.repairs = 0

    def remember(self, dp: Dataplane) -> None:
        self.expected = index_digest(dp)

    def drifted(self, dp: Dataplane) -> bool:
        return self.expected is not None and index_digest(dp) != self.expected


async def check(agent: Agent) -> bool:
    """Repair drift, if any; True if it did. The caller holds the agent's
    apply lock, so no apply of its own is half done."""
    if not await agent._dp(agent.drift.drifted, agent.dp):
        return False
    if agent.desired is None:
        log.warning("data plane changed by someone else before any desired state: adopting what the kernel holds")
        agent._installed_from(await agent._dp(installed, agent.dp))
        await agent._dp(agent.drift.remember, agent.dp)
        return False
    agent.drift.repairs += 1
    agent.metrics.drift_repairs.inc()
    log.warning(
        "drift: the kernel's tables differ from those of generation=%d; repairing (repair %d)",
        agent.generation,
        agent.drift.repairs,
    )
    # Every service built again into the kernel: an apply writes what the live
    # index lacks or holds otherwise, whoever changed it.
    await agent._apply({}, "drift", agent.generation, full=True)
    agent._installed_from(await agent._dp(installed, agent.dp))
    return True


async def verify(agent: Agent) -> None:
    """check(), a failure logged and shown in the agent's state (the caller
    holds the apply lock)."""
    try:
        await check(agent)
    except (DataplaneError, BpfError, OSError, ValueError) as exc:
        agent.error = f"drift repair failed: {exc}"
        log.error("drift repair failed: %s", exc)


async def watch(agent: Agent, interval: float) -> None:
    """Check every interval seconds, between the operator's resyncs."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with agent._lock:
                await verify(agent)
        except Exception:
            log.exception("drift check failed")
