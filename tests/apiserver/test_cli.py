"""`xdsr apiserver` as a process: serves until SIGTERM; a bad tokens file or
address exits non-zero and says what is wrong."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from xdsr.cli.apiserver import parse_listen
from xdsr.local.etcd import EtcdServer
from xdsr.local.process import free_port


def xdsr(*args: str) -> list[str]:
    exe = shutil.which("xdsr", path=str(Path(sys.executable).parent))
    return [exe, *args] if exe else [sys.executable, "-m", "xdsr.cli", *args]


def test_serves_until_sigterm(etcd: EtcdServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - {token: cli-token-1, project_id: cli}\n")
    port = free_port()
    proc = subprocess.Popen(
        xdsr("apiserver", "--store", etcd.endpoint, "--listen", f"127.0.0.1:{port}", "--tokens-file", str(tokens)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/v2/lbaas/loadbalancers", headers={"X-Auth-Token": "cli-token-1"}
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "the API server did not come up"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == {"loadbalancers": [], "loadbalancers_links": []}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize(
    ("tokens", "listen", "words"),
    [
        ("tokens:\n  - {token: cli-token-1}\n", "127.0.0.1:1", "tokens[0].project_id"),
        ("tokens: []\n", "localhost", "ADDR:PORT"),
    ],
    ids=["tokens file", "listen"],
)
def test_bad_arguments(tmp_path: Path, tokens: str, listen: str, words: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(tokens)
    out = subprocess.run(
        xdsr("apiserver", "--listen", listen, "--tokens-file", str(path)), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and words in out.stderr, out.stderr


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:9876") == ("0.0.0.0", 9876)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen(":80") == ("0.0.0.0", 80)
    for bad in ("80", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            parse_listen(bad)
