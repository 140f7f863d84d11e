"""The etcd gateway's HTTP/1.1 client (store/gateway.py) against local
servers that answer as the test says: Content-Length and chunked answers,
keep-alive, and the two kinds of failure the store tells apart (never sent,
or perhaps arrived)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from xdsr.local.process import free_port
from xdsr.store.gateway import Broken, GatewayPool, NotSent

# request -> raw answer (None: close; a list: its pieces, sent one by one)
Answer = Callable[[bytes], Awaitable[bytes | list[bytes] | None]]


async def _serve(answer: Answer) -> tuple[asyncio.Server, str, list[bytes], list[int]]:
    requests: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                requests.append(request)
                raw = await answer(request)
                if raw is None:
                    break
                for piece in raw if isinstance(raw, list) else [raw]:
                    writer.write(piece)
                    await writer.drain()
                    if isinstance(raw, list):
                        await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", requests, connections


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def _chunked(body: bytes, size: int) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_answers_by_length_and_chunked_on_one_kept_connection() -> None:
    async def body() -> None:
        big = b'{"kvs":[' + b",".join(b'"%05d"' % i for i in range(3000)) + b"]}"

        async def answer(request: bytes) -> bytes:
            return _chunked(big, 4096) if b"/big" in request else _ok(b'{"ok":true}')

        server, url, requests, connections = await _serve(answer)
        pool = GatewayPool(None, timeout=2.0)
        try:
            assert await pool.post(url, "/v3/kv/put", b'{"key":"YQ=="}', token="t0k") == (200, b'{"ok":true}')
            assert await pool.post(url, "/big", b"{}") == (200, big)
            assert await pool.post(url, "/v3/kv/put", b"{}") == (200, b'{"ok":true}')
            assert len(connections) == 1  # kept alive
            head, _, sent = requests[0].partition(b"\r\n\r\n")
            assert head.startswith(b"POST /v3/kv/put HTTP/1.1\r\n") and sent == b'{"key":"YQ=="}'
            assert b"\r\nAuthorization: t0k" in head and b"\r\nHost: 127.0.0.1:" in head
            # Several at once: one connection each, all answered.
            got = await asyncio.gather(*(pool.post(url, "/v3/kv/put", b"{}") for _ in range(8)))
            assert got == [(200, b'{"ok":true}')] * 8
        finally:
            await pool.close()
            server.close()

    asyncio.run(body())


def test_an_answer_in_pieces() -> None:
    async def body() -> None:
        big = b"[" + b",".join(b"%d" % i for i in range(2000)) + b"]"

        async def answer(request: bytes) -> list[bytes]:
            raw = _chunked(big, 1000) if b"/chunked" in request else _ok(big)
            cuts = [0, 5, 17, 40, 41, 1000, 1003, 1004, 2500, len(raw) - 3, len(raw) - 1, len(raw)]
            return [raw[a:b] for a, b in itertools.pairwise(cuts)]

        server, url, _, _ = await _serve(answer)
        pool = GatewayPool(None, timeout=2.0)
        try:
            assert await pool.post(url, "/chunked", b"{}") == (200, big)
            assert await pool.post(url, "/length", b"{}") == (200, big)
        finally:
            await pool.close()
            server.close()

    asyncio.run(body())


def test_failures_say_whether_the_request_may_have_arrived() -> None:
    async def body() -> None:
        pool = GatewayPool(None, timeout=0.5)
        with pytest.raises(NotSent):
            await pool.post(f"http://127.0.0.1:{free_port()}", "/v3/kv/put", b"{}")  # refused

        async def hang_up(request: bytes) -> None:
            return None

        async def garbage(request: bytes) -> bytes:
            return b"SMTP ready\r\n\r\n"

        async def silent(request: bytes) -> bytes:
            await asyncio.sleep(5)
            return _ok(b"{}")

        for answer in (hang_up, garbage, silent):
            server, url, requests, _ = await _serve(answer)
            try:
                with pytest.raises(Broken):
                    await pool.post(url, "/v3/kv/put", b"{}")
                assert len(requests) == 1  # it did arrive
            finally:
                server.close()
        await pool.close()

    asyncio.run(body())


def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def body() -> None:
        async def once(request: bytes) -> bytes:
            return _ok(b"{}").replace(b"Content-Type", b"Connection: close\r\nContent-Type")

        server, url, _, connections = await _serve(once)
        pool = GatewayPool(None, timeout=2.0)
        try:
            for _ in range(3):
                assert await pool.post(url, "/v3/kv/range", b"{}") == (200, b"{}")
            assert len(connections) == 3
        finally:
            await pool.close()
            server.close()

    asyncio.run(body())
