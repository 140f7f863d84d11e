"""The operator's client for the agents' API."""

from __future__ import annotations

import httpx

from xdsr.model.agent import AgentState, DesiredState


class AgentError(Exception):
    """An agent could not be reached or refused a state."""


class AgentClient:
    def __init__(self, token: str, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    async def put_state(self, endpoint: str, state: DesiredState) -> AgentState:
        """Apply a state; a node already past it (409) answers with its own."""
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
        try:
            resp = await self._http.get(f"{endpoint}/v1/state")
        except httpx.HTTPError as exc:
            raise AgentError(f"{endpoint}: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise AgentError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:300]}")
        return AgentState.model_validate_json(resp.content)

    async def close(self) -> None:
        await self._http.aclose()
