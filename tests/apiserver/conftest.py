"""Fixtures: a real etcd per test module, the API server on it, clients."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.apiserver.helpers import TOKEN_A, TOKEN_ADMIN, TOKEN_B, ServerThread, client
from xdsr.local.etcd import EtcdServer


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(etcd: EtcdServer) -> Iterator[ServerThread]:
    server = ServerThread(etcd.endpoint).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def a(api: ServerThread) -> Iterator[httpx.Client]:
    with client(api, TOKEN_A) as c:
        yield c


@pytest.fixture
def b(api: ServerThread) -> Iterator[httpx.Client]:
    with client(api, TOKEN_B) as c:
        yield c


@pytest.fixture
def admin(api: ServerThread) -> Iterator[httpx.Client]:
    with client(api, TOKEN_ADMIN) as c:
        yield c
