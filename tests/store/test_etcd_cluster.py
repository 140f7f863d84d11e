"""The etcd store client beyond one plain endpoint: the members of a
3-member cluster with failover, TLS with client certificates, and etcd's
own authentication."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest

from tests.certs import CA
from xdsr.local.etcd import EtcdCluster, EtcdServer
from xdsr.local.process import free_port
from xdsr.store.base import StoreUnavailable
from xdsr.store.etcd import EtcdConfig, EtcdStore

pytestmark = pytest.mark.skipif(not shutil.which("etcd"), reason="etcd is not installed (Debian package etcd-server)")


async def eventually(call, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_fails_over_between_the_members_of_a_cluster() -> None:
    async def body(cluster: EtcdCluster) -> None:
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused at once
        store = EtcdStore([dead, *cluster.endpoints], timeout=2)
        try:
            rev = await store.put("/t/a", b"1", expect=0)  # went to the first member that answers
            assert store.endpoint == cluster.endpoints[0]
            watch = store.watch("/t/", rev + 1)
            got = asyncio.ensure_future(anext(watch))
            await store.put("/t/b", b"2")
            assert (await asyncio.wait_for(got, 10)).key == "/t/b"
            await watch.aclose()

            cluster.members[0].kill()  # the member in use goes away
            # A read fails over by itself; while the others elect a new
            # leader it may find none (unavailable, never wrong).
            item = await eventually(lambda: store.get("/t/a"))
            assert item is not None and item.value == b"1"
            assert store.endpoint in cluster.endpoints[1:]
            await store.put("/t/a", b"3", expect=item.mod_revision)  # so does the next write
            items, _ = await store.list("/t/")
            assert [(i.key, i.value) for i in items] == [("/t/a", b"3"), ("/t/b", b"2")]
            # A watch starts on the member in use now.
            watch = store.watch("/t/", 1)
            assert (await asyncio.wait_for(anext(watch), 10)).key == "/t/a"
            await watch.aclose()

            cluster.members[1].kill()  # no quorum left: unavailable, never wrong
            with pytest.raises(StoreUnavailable):
                await store.put("/t/c", b"4")
        finally:
            await store.close()

    with EtcdCluster(3) as cluster:
        asyncio.run(body(cluster))


def test_endpoints_as_one_comma_separated_string() -> None:
    store = EtcdStore("http://a:1, http://b:2/,")
    assert store.endpoints == ["http://a:1", "http://b:2"]
    asyncio.run(store.close())
    with pytest.raises(ValueError):
        EtcdStore(" , ")


def test_config_from_etcdctl_variables(tmp_path: Path) -> None:
    env = {"ETCDCTL_CACERT": "/ca.pem", "ETCDCTL_CERT": "/c.pem", "ETCDCTL_KEY": "/k.pem", "ETCDCTL_USER": "u:p:w"}
    c = EtcdConfig.from_env(env)
    assert (c.ca, c.cert, c.key, c.user, c.password) == (Path("/ca.pem"), Path("/c.pem"), Path("/k.pem"), "u", "p:w")
    assert EtcdConfig.from_env({"ETCDCTL_USER": "u", "ETCDCTL_PASSWORD": "x"}).password == "x"
    assert EtcdConfig.from_env({}) == EtcdConfig()


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    ca = CA(tmp_path, "etcd")
    # etcd's own JSON gateway dials etcd with the server's certificate: it needs clientAuth too.
    server = ca.issue("etcd-member", server=True, client=True)
    client = ca.issue("xdsr", server=False)
    stranger = CA(tmp_path, "other").issue("xdsr", server=False)

    async def body(endpoint: str) -> None:
        good = EtcdStore(endpoint, config=EtcdConfig(ca=ca.path, cert=client.cert, key=client.key))
        try:
            await good.put("/tls", b"yes")
            assert (await good.get("/tls")).value == b"yes"  # type: ignore[union-attr]
        finally:
            await good.close()
        for config in (EtcdConfig(ca=ca.path), EtcdConfig(ca=ca.path, cert=stranger.cert, key=stranger.key)):
            bad = EtcdStore(endpoint, timeout=2, config=config)
            try:
                with pytest.raises(StoreUnavailable):
                    await bad.get("/tls")
            finally:
                await bad.close()

    etcd = EtcdServer(tls=(server.cert, server.key, ca.path))
    with etcd:
        assert etcd.endpoint.startswith("https://")
        asyncio.run(body(etcd.endpoint))


def test_etcd_authentication() -> None:
    async def body(endpoint: str) -> None:
        # Turn etcd's authentication on: a root user, then auth enable.
        async with httpx.AsyncClient(base_url=endpoint) as http:
            assert (
                await http.post("/v3/auth/user/add", json={"name": "root", "password": "s3cret"})
            ).status_code == 200
            r = await http.post("/v3/auth/user/grant", json={"user": "root", "role": "root"})
            assert r.status_code == 200, r.text
            assert (await http.post("/v3/auth/enable", json={})).status_code == 200
        anonymous = EtcdStore(endpoint, timeout=2)
        wrong = EtcdStore(endpoint, timeout=2, config=EtcdConfig(user="root", password="nope"))
        good = EtcdStore(endpoint, config=EtcdConfig(user="root", password="s3cret"))
        try:
            for store in (anonymous, wrong):
                with pytest.raises(StoreUnavailable):
                    await store.put("/auth", b"x")
            rev = await good.put("/auth", b"x")
            watch = good.watch("/auth", rev)
            assert (await asyncio.wait_for(anext(watch), 10)).value == b"x"
            await watch.aclose()
            good._token = "expired-or-wrong"  # etcd refuses it: the client gets a new one
            assert (await good.get("/auth")).value == b"x"  # type: ignore[union-attr]
        finally:
            for store in (anonymous, wrong, good):
                await store.close()

    with EtcdServer() as etcd:
        asyncio.run(body(etcd.endpoint))
