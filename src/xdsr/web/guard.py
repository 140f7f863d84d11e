"""ASGI middlewares that answer before the application reads the body.

    app.add_middleware(BodyLimit, max_bytes=..., render=...)
    app.add_middleware(Authenticate, check=..., protected=..., render=...)

Starlette runs the middleware added last first, so add BodyLimit before
Authenticate: a request without a credential then gets its 401 without a
byte of its body being read, and an authenticated one gets a 413 as soon as
its body passes the limit (at once when Content-Length says so; while it
streams otherwise), never after the whole body was buffered and parsed.

`render(status, message)` makes the body of the refusal, so each server
keeps its own error format (Octavia's fault for the API, `detail` for the
agent).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Render = Callable[[int, str], bytes]


async def refuse(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    # The client may still be sending a body we will not read: close the
    # connection after answering rather than drain it.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a request body over max_bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int, render: Render) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    def _message(self) -> bytes:
        return self.render(413, f"the request body is larger than {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        # (the HTTP server has already refused a malformed Content-Length)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await refuse(send, 413, self._message())
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # Answer now and tell the application the client went
                    # away: whatever it makes of that is not sent.
                    refused = True
                    await refuse(send, 413, self._message())
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)


class Authenticate:
    """401 for a request to a protected path without a good credential,
    before anything else runs. `check(scope)` returns who is calling (put
    into scope[SCOPE_KEY] for the application) or None."""

    SCOPE_KEY = "xdsr.caller"

    def __init__(
        self,
        app: ASGIApp,
        check: Callable[[Scope], object | None],
        protected: Callable[[str], bool],
        render: Render,
        message: str,
        challenge: bytes | None = None,
    ) -> None:
        self.app = app
        self.check = check
        self.protected = protected
        self.render = render
        self.message = message
        self.challenge = challenge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.protected(scope["path"]):
            caller = self.check(scope)
            if caller is None:
                extra = [(b"www-authenticate", self.challenge)] if self.challenge else []
                await refuse(send, 401, self.render(401, self.message), extra)
                return
            # In place: a middleware outside this one (the request log) reads what
            # the router later writes into the same scope (the route matched).
            scope[self.SCOPE_KEY] = caller
        await self.app(scope, receive, send)


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (name in lower case)."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value  # type: ignore[no-any-return]
    return None
