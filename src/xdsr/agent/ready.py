"""The agent's plain-HTTP probe listener (--health-listen), for kubelet.

The API asks every caller for a client certificate, which kubelet's probes
have not; this listener, bound to loopback under hostNetwork, answers them
as Cilium's agent does, with facts that say nothing of what the node serves:

GET /healthz  200 "ok" when the node is ready, else 503 and one line saying why
GET /livez    200 while the agent's event loop runs (it answers on that loop)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from xdsr.agent.bgp import XdpWatch
    from xdsr.agent.core import Agent


@dataclass
class Readiness:
    agent: Agent
    watch: XdpWatch
    # With a store the operator owns the node's tables: an agent that has not
    # applied a generation since it started may hold stale ones.
    needs_generation: bool
    stopping: Callable[[], bool]

    async def problem(self) -> str | None:
        """None when ready; else why not, in one line."""
        if self.stopping():
            return "the agent is stopping"
        # A netlink query, off the data-plane thread: a long apply does not fail the probe.
        xdp = await asyncio.to_thread(self.watch.problem)
        if xdp is not None:
            return xdp
        if self.agent.error is not None:
            # What failed, without the exception's text (addresses, services).
            return self.agent.error.partition(": ")[0]
        if self.needs_generation and self.agent.applied_at is None:
            return "no generation applied from the operator yet"
        return None


def create_health_app(ready: Readiness) -> Starlette:
    async def healthz(request: Request) -> PlainTextResponse:
        why = await ready.problem()
        return PlainTextResponse("ok\n" if why is None else why + "\n", status_code=200 if why is None else 503)

    async def livez(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/healthz", healthz), Route("/livez", livez)])
