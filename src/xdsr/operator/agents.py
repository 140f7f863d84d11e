"""The operator's client for the agents' API."""

from __future__ import annotations

import contextlib

import httpx

from xdsr.model.agent import AgentState, DesiredState
from xdsr.web.tls import ClientTls


class AgentError(Exception):
    """An agent could not be reached or refused a state. status: the HTTP
    status it answered (0: no answer); errors: (field, message) of each
    problem of a refused state (422), naming the services the way the state
    did (services[i]..., changes.<lb id>[j]...); detail: the agent's own
    words (its `error` or `detail`), else the message."""

    def __init__(
        self, message: str, status: int = 0, errors: list[tuple[str, str]] | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []
        self.detail = detail or message


class AgentClient:
    """tls: mutual TLS to the agents (web/tls.py); then an agent that
    advertises a plain http:// endpoint is refused, so the token never
    travels in the clear. None: plain HTTP (`--insecure-http`)."""

    def __init__(
        self, token: str, timeout: float = 10.0, tls: ClientTls | None = None, apply_timeout: float = 300.0
    ) -> None:
        verify = tls.context() if tls is not None else True
        self._tls = tls is not None
        self._http = httpx.AsyncClient(timeout=timeout, headers={"Authorization": f"Bearer {token}"}, verify=verify)
        # A full state of thousands of services takes the node a while to
        # parse and apply before it answers: waiting less would only make it
        # receive the same body again and again.
        self._apply_timeout = httpx.Timeout(timeout, read=apply_timeout)

    def _check(self, endpoint: str) -> None:
        if self._tls and not endpoint.startswith("https://"):
            raise AgentError(f"{endpoint}: not https: the operator talks to agents over TLS only")

    async def put_state(self, endpoint: str, state: DesiredState | bytes) -> AgentState:
        """Apply a state (or its JSON); a node already past it, or not at a
        delta's base (409), answers with its own."""
        self._check(endpoint)
        body = state if isinstance(state, bytes) else state.model_dump_json(exclude_defaults=True).encode()
        try:
            resp = await self._http.put(
                f"{endpoint}/v1/state",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=self._apply_timeout,
            )
        except httpx.HTTPError as exc:
            raise AgentError(f"{endpoint}: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code in (200, 409):
            return AgentState.model_validate_json(resp.content)
        errors: list[tuple[str, str]] = []
        detail = None
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            body = resp.json()
            detail = body.get("error") or body.get("detail")
            errors = [(str(e["field"]), str(e["message"])) for e in body.get("errors", [])]
        message = f"{endpoint}: HTTP {resp.status_code}: {resp.text[:300]}"
        raise AgentError(message, resp.status_code, errors, str(detail) if detail else None)

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
