from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.kube.fakeapi import FakeKubeApi, fake_kube_api
from xdsr.local.etcd import EtcdServer


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="module")
def kube_api() -> Iterator[FakeKubeApi]:
    with fake_kube_api(bookmark_interval=0.2) as api:
        yield api
