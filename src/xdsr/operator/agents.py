"""The operator's client for the agents' API."""

from __future__ import annotations

import contextlib
import io
import json
import ssl

import aiohttp
from pydantic import ValidationError

from xdsr.model.agent import MAX_PARTS, AgentState, DesiredState
from xdsr.web.tls import ClientTls

# The largest body sent: a full state larger than this goes in parts
# (model/agent.py). Well under the agent's limit (64 MiB), so that a part
# never comes near it, and a node is not sent one huge body it must hold
# whole before it can start parsing it.
PART_BYTES = 16 << 20


def _encode(state: DesiredState) -> bytes:
    return state.model_dump_json(exclude_defaults=True).encode()


def split(state: DesiredState, part_bytes: int = PART_BYTES) -> list[bytes]:
    """The bodies a full state is sent in: itself, or parts of at most
    part_bytes each (a part holds one service at least, whatever its size).
    Each service is encoded once, whether the state fits in one body or not."""
    if state.is_delta or not state.services:
        return [_encode(state)]
    encoded = [s.model_dump_json(exclude_defaults=True).encode() for s in state.services]
    groups: list[list[bytes]] = [[]]
    size = 0
    for e in encoded:
        if groups[-1] and size + len(e) + 1 > part_bytes - 128:  # room for the part's header
            groups.append([])
            size = 0
        groups[-1].append(e)
        size += len(e) + 1
    if len(groups) > MAX_PARTS:
        total = sum(map(len, encoded))
        raise AgentError(f"a full state of {total} bytes needs {len(groups)} parts, more than {MAX_PARTS}")
    out = []
    for i, group in enumerate(groups):
        head = DesiredState.model_construct(
            generation=state.generation, epoch=state.epoch, base=None, changes={}, part=i, parts=len(groups)
        )
        # The header without services (the default, left out), then the part's services.
        out.append(_encode(head)[:-1] + b',"services":[' + b",".join(group) + b"]}")
    return out


def _answer(endpoint: str, status: int, content: bytes) -> AgentState:
    """The node's state as it answered it; an answer that is not one is the
    node's failure (AgentError), like no answer, not the operator's."""
    try:
        return AgentState.model_validate_json(content)
    except ValidationError as exc:
        raise AgentError(
            f"{endpoint}: HTTP {status} with no valid state: {exc.error_count()} problem(s), "
            f"first: {exc.errors()[0]['msg']}",
            status,
        ) from exc


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


# What a request to an agent can fail with short of an answer: aiohttp's
# own errors (refused, reset, TLS, a read timeout), the total timeout
# (asyncio's TimeoutError) and a socket or TLS error it let through.
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_JSON = {"Content-Type": "application/json"}
# Below the agents' keep-alive (uvicorn's 5 s): the operator drops an idle
# connection before a node does, rather than sending on one being closed.
KEEPALIVE = 4.0
# A body larger than this (a full state) is sent from a BytesIO over the
# same bytes: aiohttp writes it (with its length) 256 KiB at a time as the
# node takes it, serving the other nodes between, instead of handing the
# socket all of it at once (and warning that raw bytes this large may
# block the loop).
STREAMED_FROM = 1 << 20


class AgentClient:
    """tls: mutual TLS to the agents (web/tls.py); then an agent that
    advertises a plain http:// endpoint is refused, so the token never
    travels in the clear. None: plain HTTP (`--insecure-http`).

    On aiohttp, as the etcd client (store/etcd.py): its pool and C parser
    cost a fraction of httpx's CPU per request, and every change is a
    request to each node of the group. One session, made in the running
    loop at the first request, keeps connections to each node; a request
    on a kept connection the node closed meanwhile is sent again once, on
    a new one (aiohttp's own retry of idempotent methods: a node answers a
    state it already has with its own)."""

    def __init__(
        self, token: str, timeout: float = 10.0, tls: ClientTls | None = None, apply_timeout: float = 300.0
    ) -> None:
        self._ssl: ssl.SSLContext | bool = tls.context() if tls is not None else True
        self._tls = tls is not None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http: aiohttp.ClientSession | None = None
        # timeout: for a connection (TLS handshake included) and for each
        # read of an answer, as httpx's connect/pool/read timeouts did.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout)
        # A full state of thousands of services takes the node a while to
        # parse and apply before it answers: waiting less would only make it
        # receive the same body again and again. aiohttp times no write: a
        # node that stops reading a large body is given up after the total.
        self._apply_timeout = aiohttp.ClientTimeout(
            total=timeout + apply_timeout, connect=timeout, sock_connect=timeout, sock_read=apply_timeout
        )
        self.part_bytes = PART_BYTES
        # The last state sent and its bodies: the nodes of a group in step
        # are sent the very same state, encoded once.
        self._last: tuple[DesiredState, list[bytes]] | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                # No cap on connections: the operator makes at most a push
                # and a poll or two to each node at a time.
                connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl, keepalive_timeout=KEEPALIVE),
                headers=self._headers,
                timeout=self._timeout,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._http

    def _check(self, endpoint: str) -> None:
        if self._tls and not endpoint.startswith("https://"):
            raise AgentError(f"{endpoint}: not https: the operator talks to agents over TLS only")

    @staticmethod
    def _failed(endpoint: str, exc: BaseException) -> AgentError:
        return AgentError(f"{endpoint}: {exc.__class__.__name__}: {str(exc) or 'timed out'}")

    async def push(self, endpoint: str, state: DesiredState) -> tuple[AgentState, int]:
        """Send a state, in parts if it is a full state too large for one
        body; the node's answer to the last body sent, and the bytes sent.
        A part refused (the node restarted or took another state meanwhile)
        starts the parts again, once."""
        if self._last is not None and self._last[0] is state:
            bodies = self._last[1]
        else:
            bodies = split(state, self.part_bytes)
            self._last = (state, bodies)
        sent = 0
        for _attempt in range(2):
            for body in bodies:
                status, got = await self._put(endpoint, body)
                sent += len(body)
                if status != 202:
                    break
            if len(bodies) == 1 or status != 409 or got.generation >= state.generation:
                break
        return got, sent

    async def put_state(self, endpoint: str, state: DesiredState | bytes) -> AgentState:
        """Apply a state (or its JSON) in one body; a node already past it,
        or not at a delta's base (409), answers with its own."""
        return (await self._put(endpoint, state if isinstance(state, bytes) else _encode(state)))[1]

    async def _put(self, endpoint: str, body: bytes) -> tuple[int, AgentState]:
        self._check(endpoint)
        try:
            data = io.BytesIO(body) if len(body) > STREAMED_FROM else body
            async with self._session().put(
                f"{endpoint}/v1/state", data=data, headers=_JSON, timeout=self._apply_timeout
            ) as resp:
                status, content = resp.status, await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise self._failed(endpoint, exc) from exc
        if status in (200, 202, 409):
            return status, _answer(endpoint, status, content)
        errors: list[tuple[str, str]] = []
        detail = None
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            answer = json.loads(content)
            detail = answer.get("error") or answer.get("detail")
            errors = [(str(e["field"]), str(e["message"])) for e in answer.get("errors", [])]
        message = f"{endpoint}: HTTP {status}: {content.decode(errors='replace')[:300]}"
        raise AgentError(message, status, errors, str(detail) if detail else None)

    async def get_state(self, endpoint: str, since: tuple[str, int] | None = None) -> AgentState:
        """The node's state; with since (instance, seq of an earlier answer),
        the reports that changed after it only, if the node can tell."""
        self._check(endpoint)
        params = {"instance": since[0], "since": since[1]} if since is not None else None
        try:
            async with self._session().get(f"{endpoint}/v1/state", params=params) as resp:
                status, content = resp.status, await resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise self._failed(endpoint, exc) from exc
        if status != 200:
            raise AgentError(f"{endpoint}: HTTP {status}: {content.decode(errors='replace')[:300]}")
        return _answer(endpoint, status, content)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
