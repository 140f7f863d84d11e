"""The operator's client for the agents' API."""

from __future__ import annotations

import httpx

from xdsr.model.agent import AgentState, DesiredState
from xdsr.web.tls import ClientTls


class AgentError(Exception):
    """An agent could not be reached or refused a state."""


class AgentClient:
    """tls: mutual TLS to the agents (web/tls.py); then an agent that
    advertises a plain http:// endpoint is refused, so the token never
    travels in the clear. None: plain HTTP (`--insecure-http`)."""

    def __init__(self, token: str, timeout: float = 10.0, tls: ClientTls | None = None) -> None:
        verify = tls.context() if tls is not None else True
        self._tls = tls is not None
        self._http = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {token}"}, verify=verify)

    def _check(self, endpoint: str) -> None:
        if self._tls and not endpoint.startswith("https://"):
            raise AgentError(f"{endpoint}: not https: the operator talks to agents over TLS only")

    async def put_state(self, endpoint: str, state: DesiredState) -> AgentState:
        """Apply a state; a node already past it (409) answers with its own."""
        self._check(endpoint)
        try:
            resp = await self._http.put(
                f"{endpoint}/v1/state",
                content=state.model_dump_json(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise AgentError(f"{endpoint}: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code in (200, 409):
            return AgentState.model_validate_json(resp.content)
        raise AgentError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:300]}")

    async def get_state(self, endpoint: str) -> AgentState:
        self._check(endpoint)
        try:
            resp = await self._http.get(f"{endpoint}/v1/state")
        except httpx.HTTPError as exc:
            raise AgentError(f"{endpoint}: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise AgentError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:300]}")
        return AgentState.model_validate_json(resp.content)

    async def close(self) -> None:
        await self._http.aclose()
