"""The agent's API over mutual TLS (docs/agent.md): the operator's client
certificate gets in, every other client is refused in the handshake, a
node's own certificate cannot be used to push to a node, and the doc
routes are closed."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import AgentProcess
from tests.certs import CA
from xdsr.model.agent import DesiredState
from xdsr.operator.agents import AgentClient, AgentError
from xdsr.web.tls import ClientTls


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca, other = CA(tmp_path, "xdsr"), CA(tmp_path, "other")
    return {
        "ca": ca,
        "node": ca.issue("lbn0", server=True),
        "operator": ca.issue("operator", server=False),
        "stranger": other.issue("operator", server=False),
    }


@pytest.fixture
def tls_agent(agent_factory: Any, pki: dict[str, Any]) -> AgentProcess:
    a: AgentProcess = agent_factory()
    node, op = pki["node"], pki["operator"]
    args = ["--tls-cert", str(node.cert), "--tls-key", str(node.key), "--tls-client-ca", str(pki["ca"].path)]
    a.use_tls(args, ClientTls(pki["ca"].path, op.cert, op.key).context())
    return a.start()


def client(tls_agent: AgentProcess, ca: Path, cert: Path, key: Path) -> AgentClient:
    return AgentClient(tls_agent.token, timeout=5, tls=ClientTls(ca, cert, key))


def put_and_get(c: AgentClient, url: str) -> int:
    async def go() -> int:
        try:
            state = await c.put_state(url, DesiredState(generation=1, services=[]))
            await c.get_state(url)
            return state.generation
        finally:
            await c.close()

    return asyncio.run(go())


def test_the_operator_certificate_gets_in(tls_agent: AgentProcess, pki: dict[str, Any]) -> None:
    op = pki["operator"]
    assert put_and_get(client(tls_agent, pki["ca"].path, op.cert, op.key), tls_agent.url) == 1


@pytest.mark.parametrize("who", ["stranger", "node"])
def test_other_certificates_are_refused(tls_agent: AgentProcess, pki: dict[str, Any], who: str) -> None:
    # "stranger": signed by another CA. "node": signed by our CA, but for
    # serverAuth only: a node's certificate cannot push to another node.
    issued = pki[who]
    with pytest.raises(AgentError):
        put_and_get(client(tls_agent, pki["ca"].path, issued.cert, issued.key), tls_agent.url)
    assert tls_agent.state()["generation"] == 0  # nothing was applied


def test_no_certificate_and_plain_http_are_refused(tls_agent: AgentProcess, pki: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {tls_agent.token}"}
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
        httpx.get(tls_agent.url + "/v1/state", headers=headers, verify=ctx, timeout=5)
    plain = tls_agent.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/v1/state", headers=headers, timeout=5)


def test_an_agent_certificate_must_match_the_ca(tls_agent: AgentProcess, tmp_path: Path) -> None:
    # The operator trusts only its CA: an agent with another CA's certificate is not one of ours.
    other = CA(tmp_path, "elsewhere")
    op = other.issue("operator", server=False)
    with pytest.raises(AgentError):
        put_and_get(client(tls_agent, other.path, op.cert, op.key), tls_agent.url)


def test_doc_routes_are_closed(tls_agent: AgentProcess) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert tls_agent.http.get(path).status_code == 404, path
    assert tls_agent.http.get("/healthz").status_code == 200


def test_a_tls_operator_never_sends_its_token_in_the_clear(pki: dict[str, Any]) -> None:
    op = pki["operator"]
    c = AgentClient("t" * 20, tls=ClientTls(pki["ca"].path, op.cert, op.key))
    with pytest.raises(AgentError, match="not https"):
        put_and_get(c, "http://127.0.0.1:9")


def test_a_body_over_the_limit_is_413(tls_agent: AgentProcess) -> None:
    """A body declared over the limit is refused before it is read: on a raw
    TLS socket, the answer comes with only the head and 1 KiB sent. (A client
    still streaming when the agent closes may see the connection reset before
    it reads the 413, so this sends no more than the agent takes.)"""
    import socket

    from xdsr.agent.api import MAX_BODY_BYTES

    head = (
        "PUT /v1/state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tls_agent.token}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    )
    assert tls_agent.tls_context is not None
    with (
        socket.create_connection(("127.0.0.1", tls_agent.port), timeout=10) as raw,
        tls_agent.tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(head.encode() + b" " * 1024)
        data = b""
        while not data.endswith(b"}") and (chunk := sock.recv(65536)):
            data += chunk
    assert data.split(b" ", 2)[1] == b"413" and b"larger than" in data, data
    assert tls_agent.state()["generation"] == 0


def test_xdsr_agent_status_over_mutual_tls(tls_agent: AgentProcess, pki: dict[str, Any]) -> None:
    """`xdsr agent status` reaches the agent as the operator does (the CA,
    a clientAuth certificate, the token); a node without BGP says so, and
    `xdsr agent drain` is refused with the agent's reason."""
    import subprocess
    import sys

    op = pki["operator"]
    tls = ["--agent-ca", str(pki["ca"].path), "--agent-cert", str(op.cert), "--agent-key", str(op.key)]
    base = ["--endpoint", tls_agent.url, "--token-file", str(tls_agent.token_file), *tls]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "xdsr.cli", "agent", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    r = cli("status", *base)
    assert r.returncode == 0, r.stderr
    assert "node lbn0  generation 0  services 0/0 installed" in r.stdout and "bgp: not configured" in r.stdout
    r = cli("drain", *base)
    assert r.returncode == 1 and "409 BGP is not configured on this node" in r.stderr, r.stderr
    stranger = pki["stranger"]
    refused = ["--agent-ca", str(pki["ca"].path), "--agent-cert", str(stranger.cert), "--agent-key", str(stranger.key)]
    r = cli("status", "--endpoint", tls_agent.url, "--token-file", str(tls_agent.token_file), *refused)
    assert r.returncode == 1 and tls_agent.url in r.stderr, r.stderr
    r = cli(
        "status", "--endpoint", tls_agent.url.replace("https", "http"), "--token-file", str(tls_agent.token_file), *tls
    )
    assert r.returncode == 2 and "not https" in r.stderr, r.stderr
