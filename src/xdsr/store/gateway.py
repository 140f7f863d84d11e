"""The HTTP/1.1 client of etcd's JSON gateway for unary requests (range,
put, txn, ...): keep-alive connections of asyncio's own, each request one
write, each answer parsed here.

    pool = GatewayPool(ssl_context=None, timeout=3.0)
    status, body = await pool.post("http://127.0.0.1:2379", "/v3/kv/range", b"{...}", token=None)
    await pool.close()

Why not httpcore (the transport under httpx), which the store used before:
per request it walks every pooled connection asking each whether its socket
is readable (through anyio's typed attributes), sends the head and the body
in two writes and parses the answer with h11 — together about a quarter of
the API server's CPU per create, more than its own work on the request. The
gateway is Go's net/http: it answers with Content-Length or, for large
bodies, chunked; nothing else is needed here. Watches (long streams) stay
on httpx.

Failures are one of two kinds, because the store must know whether a write
may have happened: NotSent (the connection could not be opened: the request
surely never arrived) and Broken (it may have).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class GatewayError(OSError):
    """A request to the gateway failed."""


class NotSent(GatewayError):
    """No connection could be made: the request never left."""


class Broken(GatewayError):
    """The connection failed, timed out or answered nonsense after the
    request was (perhaps) sent: it may or may not have arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. The answer is
    parsed as it arrives, each byte looked at once (a range of every load
    balancer is megabytes, in many pieces)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._answer: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._head: _Head | None = None
        self._pos = 0  # where parsing goes on in _buf
        self._body = bytearray()  # a chunked answer's body so far
        self._trailer = False  # a chunked answer's last chunk seen: its trailer lines follow

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self._fail(Broken("the gateway sent data nobody asked for"))
            return
        if self._answer.done():
            return
        self._buf += data
        try:
            parsed = self._parse()
        except ValueError as exc:
            self._fail(Broken(f"unreadable answer from the gateway: {exc}"))
            return
        if parsed is not None:
            self._answer.set_result(parsed)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(Broken(f"the gateway closed the connection: {exc or 'EOF'}"))

    def eof_received(self) -> bool | None:
        return None  # close

    # --- use ---

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """(status, body, keep_alive) of one request, sent in one write."""
        assert self.transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            return await self._answer
        finally:
            self._answer = None
            self._reset()

    # --- parsing ---

    def _parse(self) -> tuple[int, bytes, bool] | None:
        """(status, body, keep_alive) once the whole answer is in, else None.
        Raises ValueError for an answer that is not HTTP/1.1 as Go writes it."""
        buf = self._buf
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._head = _head(bytes(buf[:end]))
            self._pos = end + 4
        head = self._head
        if head.length is not None:
            have = len(buf) - self._pos
            if have > head.length:
                raise ValueError("more bytes than Content-Length")
            return (head.status, bytes(buf[self._pos :]), head.keep_alive) if have == head.length else None
        return self._dechunk(head)

    def _dechunk(self, head: _Head) -> tuple[int, bytes, bool] | None:
        buf = self._buf
        while not self._trailer:
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                return None
            size_text = bytes(buf[self._pos : eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ValueError(f"chunk size {size_text[:20]!r}") from None
            if size == 0:
                self._pos = eol + 2
                self._trailer = True
                break
            if len(buf) < eol + 2 + size + 2:
                return None  # the chunk is not all in: its size line is read again then
            start = eol + 2
            if buf[start + size : start + size + 2] != b"\r\n":
                raise ValueError("chunk without its CRLF")
            self._body += buf[start : start + size]
            self._pos = start + size + 2
        # Trailer lines (Go sends none), then an empty line.
        while True:
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                return None
            if eol == self._pos:
                if len(buf) > eol + 2:
                    raise ValueError("bytes after the last chunk")
                return head.status, bytes(self._body), head.keep_alive
            self._pos = eol + 2


@dataclass(frozen=True)
class _Head:
    status: int
    length: int | None  # None: chunked
    keep_alive: bool


def _head(text: bytes) -> _Head:
    lines = text.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"status line {lines[0][:80]!r}")
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(f"Content-Length {value[:20]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.lower() == b"chunked"
            if not chunked:
                raise ValueError(f"Transfer-Encoding {value[:40]!r}")
        elif name == b"connection":
            keep_alive = value.lower() != b"close" and (keep_alive or value.lower() == b"keep-alive")
    if chunked:
        length = None
    elif length is None:
        raise ValueError("neither Content-Length nor chunked")  # Go always says one
    return _Head(int(parts[1]), length, keep_alive)


class GatewayPool:
    """Keep-alive connections to each endpoint; a request takes an idle one
    or opens one (at most max_connections at once in all)."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None, timeout: float, max_connections: int = 100, max_idle: int = 32
    ) -> None:
        self._ssl = ssl_context
        self._timeout = timeout
        self._max_idle = max_idle
        self._max_connections = max_connections
        # asyncio's semaphores belong to one event loop; a store may be used from several, one after another.
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._idle: dict[str, list[tuple[asyncio.AbstractEventLoop, _Connection]]] = {}
        self._targets: dict[str, tuple[str, int, bool, bytes]] = {}

    def _target(self, endpoint: str) -> tuple[str, int, bool, bytes]:
        got = self._targets.get(endpoint)
        if got is None:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise NotSent(f"not an http(s) endpoint: {endpoint!r}")
            tls = url.scheme == "https"
            port = url.port or (443 if tls else 80)
            host = url.hostname
            shown = f"[{host}]" if ":" in host else host
            got = self._targets[endpoint] = (host, port, tls, f"{shown}:{port}".encode())
        return got

    async def _connect(self, endpoint: str) -> _Connection:
        host, port, tls, _ = self._target(endpoint)
        loop = asyncio.get_running_loop()
        context = (self._ssl or ssl.create_default_context()) if tls else None
        try:
            async with asyncio.timeout(self._timeout):
                _, conn = await loop.create_connection(
                    _Connection, host, port, ssl=context, server_hostname=host if tls else None
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise NotSent(f"cannot connect to {endpoint}: {exc.__class__.__name__}: {exc}") from exc
        return conn

    def _take_idle(self, endpoint: str) -> _Connection | None:
        idle = self._idle.get(endpoint)
        loop = asyncio.get_running_loop()
        while idle:
            owner, conn = idle.pop()
            if owner is loop and not conn.closed:
                return conn
            conn.close()  # closed by the server meanwhile, or of another event loop
        return None

    async def post(self, endpoint: str, path: str, body: bytes, token: str | None = None) -> tuple[int, bytes]:
        """(status, body) of POST endpoint+path with a JSON body."""
        _, _, _, host = self._target(endpoint)
        head = b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            path.encode(),
            host,
            len(body),
        )
        if token:
            head += b"Authorization: " + token.encode() + b"\r\n"
        request = head + b"\r\n" + body
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self._max_connections)
        try:
            async with asyncio.timeout(self._timeout):
                await slots.acquire()
        except TimeoutError:
            raise NotSent(f"no free connection to {endpoint} within {self._timeout}s") from None
        try:
            conn = self._take_idle(endpoint) or await self._connect(endpoint)
            try:
                async with asyncio.timeout(self._timeout):
                    status, content, keep_alive = await conn.exchange(request)
            except TimeoutError:
                conn.close()
                raise Broken(f"{endpoint}{path}: no answer within {self._timeout}s") from None
            except BaseException:
                conn.close()
                raise
            idle = self._idle.setdefault(endpoint, [])
            if keep_alive and not conn.closed and len(idle) < self._max_idle:
                idle.append((loop, conn))
            else:
                conn.close()
            return status, content
        finally:
            slots.release()

    async def close(self) -> None:
        for idle in self._idle.values():
            for _, conn in idle:
                conn.close()
        self._idle.clear()
        self._slots.clear()
