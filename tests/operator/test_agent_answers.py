"""A node that answers with something that is not a state fails like a node
that does not answer (AgentError, which the operator's node workers handle),
instead of raising pydantic's ValidationError out of the client: a worker
that let it through would stop, and the node would never be pushed again.
A real HTTP server on 127.0.0.1 (aiohttp's), no mock of the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from xdsr.model.agent import DesiredState
from xdsr.operator.agents import AgentClient, AgentError

ANSWERS = {
    "not json": b"<html>proxy error</html>",
    "json, not a state": b'{"generation": "many"}',
    "empty": b"",
}


@asynccontextmanager
async def junk_agent(answer: bytes) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 answering every /v1/state with 200 and `answer`."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/v1/state", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("what", list(ANSWERS))
def test_an_answer_that_is_not_a_state_is_the_nodes_failure(what: str) -> None:
    async def body() -> None:
        client = AgentClient("token")
        try:
            async with junk_agent(ANSWERS[what]) as endpoint:
                for call in (
                    client.get_state(endpoint),
                    client.put_state(endpoint, DesiredState(generation=1, services=[])),
                ):
                    with pytest.raises(AgentError, match="HTTP 200 with no valid state") as caught:
                        await asyncio.wait_for(call, 10)
                    assert caught.value.status == 200
        finally:
            await client.close()

    asyncio.run(body())
