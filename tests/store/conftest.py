from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from xdsr.local.etcd import EtcdServer


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    with EtcdServer() as server:
        yield server
