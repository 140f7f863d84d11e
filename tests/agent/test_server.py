"""Startup checks that need no root: the token file, --listen, and how the
API names fields in its errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xdsr.agent.api import _field
from xdsr.agent.server import StartupError, _endpoint, parse_listen, read_token


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
    from xdsr.web.tls import ServerTls

    base = Options(iface="x", name="n", listen="127.0.0.1:1", token_file=tmp_path / "t")
    with pytest.raises(StartupError, match="--insecure-http") as exc:
        check_tls(base)
    assert exc.value.exit_code == 2
    check_tls(Options(**{**base.__dict__, "insecure_http": True}))
    missing = ServerTls(tmp_path / "c", tmp_path / "k", tmp_path / "ca")
    with pytest.raises(StartupError, match="--tls-cert"):
        check_tls(Options(**{**base.__dict__, "tls": missing}))
