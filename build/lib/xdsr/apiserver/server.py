"""Run the API in-process: uvicorn inside the caller's asyncio loop, next to
the operator or whatever else `xdsr up` runs there.

    server = ApiServer(store, tokens, host="127.0.0.1", port=0)
    await server.start()          # listening, cache in sync (or timeout)
    ... server.url ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Iterable

import uvicorn

from xdsr.apiserver.app import create_app
from xdsr.apiserver.auth import Token, TokenRegistry
from xdsr.apiserver.cache import Cache
from xdsr.apiserver.networks import Networks
from xdsr.store.base import Store

log = logging.getLogger("xdsr.apiserver")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process that embeds us owns SIGINT/SIGTERM and calls stop().
        yield


class ApiServer:
    def __init__(
        self,
        store: Store,
        tokens: Iterable[Token] | TokenRegistry,
        host: str = "127.0.0.1",
        port: int = 9876,
        log_level: str = "warning",
        networks: Networks | None = None,
    ) -> None:
        self.app = create_app(store, tokens, networks)
        self.host = host
        self.port = port
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False)
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def cache(self) -> Cache:
        return self.app.state.cache  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, sync_timeout: float = 10.0) -> None:
        """Listen, and wait until the cache holds the store's state (or
        sync_timeout passes: requests are then answered 503 until it does).
        Raises OSError if the address cannot be bound."""
        # Bind here rather than in uvicorn, which calls sys.exit() on failure.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections
        # only then, and without it every response waits ~40 ms (Nagle
        # against the client's delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._serve(sock), name="xdsr apiserver")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        if not await self.cache.wait_synced(sync_timeout):
            log.warning("the store did not answer within %ss; serving 503 until it does", sync_timeout)

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit as exc:
            raise RuntimeError(f"the API server failed (uvicorn exit {exc.code})") from None
        finally:
            sock.close()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._task = None
