"""Startup checks that need no root (the token file, --listen, how the API
names fields in its errors) and the probe listener of a real agent."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.conftest import services_doc
from tests.conftest import needs_root
from xdsr.agent.api import _field
from xdsr.agent.server import StartupError, _endpoint, parse_listen, read_token
from xdsr.lab import Fabric, wait_until
from xdsr.local.process import free_port


def test_token_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "token"
    f.write_text("0123456789abcdef0123\n")
    f.chmod(0o600)
    assert read_token(f) == b"0123456789abcdef0123"
    for bad, why in (("short", "at least 16"), ("0123456789abcdef 0123", "one word"), ("", "at least 16")):
        f.write_text(bad)
        with pytest.raises(StartupError, match=why) as exc:
            read_token(f)
        assert exc.value.exit_code == 2
    with pytest.raises(StartupError, match="No such file"):
        read_token(tmp_path / "missing")
    f.write_text("0123456789abcdef0123")
    f.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="xdsr.agent"):
        read_token(f)
    assert "chmod 600" in caplog.text


def test_listen_and_endpoint() -> None:
    assert parse_listen("127.0.0.1:9101") == ("127.0.0.1", 9101)
    assert parse_listen("[::1]:9101") == ("::1", 9101)
    assert parse_listen(":9101") == ("0.0.0.0", 9101)
    for bad in ("9101", "host:9101", "127.0.0.1:0", "127.0.0.1:99999"):
        with pytest.raises(StartupError):
            parse_listen(bad)
    assert _endpoint("::1", 9101) == "http://[::1]:9101"
    assert _endpoint("10.0.0.1", 80) == "http://10.0.0.1:80"


def test_error_locations_read_like_the_body() -> None:
    assert _field(("body", "services", 0, "backends", 2, "mac")) == "services[0].backends[2].mac"
    assert _field(("body", "services", 1, "vip", "function-after[_vip(), str]")) == "services[1].vip"
    assert _field(("body",)) == "body"


def test_plain_http_only_when_asked(tmp_path: Path) -> None:
    from xdsr.agent.server import Options, check_tls

    base = Options(iface="x", name="n", listen="127.0.0.1:1", token_file=tmp_path / "t")
    with pytest.raises(StartupError, match="--insecure-http") as exc:
        check_tls(base)
    assert exc.value.exit_code == 2
    check_tls(base.model_copy(update={"insecure_http": True}))
    missing = {"tls_cert": tmp_path / "c", "tls_key": tmp_path / "k", "tls_client_ca": tmp_path / "ca"}
    with pytest.raises(StartupError, match="--tls-cert"):
        check_tls(base.model_copy(update=missing))


def _probe(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


@needs_root
def test_probe_listener_answers_readiness(fab: Fabric, agent_factory: Any, etcd: Any) -> None:
    """--health-listen: plain HTTP, no token, only whether the node is ready and why not."""
    port = free_port()
    a = agent_factory(extra=["--health-listen", f"127.0.0.1:{port}"])
    a.start()
    # No store: nobody else owns the tables, so attached is ready.
    r = wait_until(lambda: _probe(port, "/healthz"), 10, what="probe listener", ignore=(httpx.TransportError,))
    assert (r.status_code, r.text) == (200, "ok\n")
    assert _probe(port, "/livez").status_code == 200
    assert _probe(port, "/v1/state").status_code == 404  # the API is not served here
    assert a.put({"generation": 1, "services": services_doc(fab)}).status_code == 200
    assert a.stop() == 0

    # With a store, a restarted agent forwards its adopted tables but is not
    # ready until the operator has applied a generation.
    a.start(extra=["--store", etcd.endpoint, "--group", "g1"])
    r = wait_until(lambda: _probe(port, "/healthz"), 10, what="probe listener", ignore=(httpx.TransportError,))
    assert (r.status_code, r.text) == (503, "no generation applied from the operator yet\n")
    assert _probe(port, "/livez").status_code == 200
    assert a.put({"generation": 2, "services": services_doc(fab)}).status_code == 200
    r = _probe(port, "/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")

    # The program removed behind the agent's back: still alive, no longer ready.
    subprocess.run(["ip", "-n", a.ns, "link", "set", "dev", a.ifname, "xdp", "off"], check=True)
    r = _probe(port, "/healthz")
    assert r.status_code == 503 and r.text.endswith(f"is no longer attached to {a.ifname}\n"), r.text
    assert _probe(port, "/livez").status_code == 200


def test_probe_listener_address_is_checked() -> None:
    with pytest.raises(StartupError, match="--health-listen 'localhost:9879'") as exc:
        parse_listen("localhost:9879", "--health-listen")
    assert exc.value.exit_code == 2
