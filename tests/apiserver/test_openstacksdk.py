"""openstacksdk's load-balancer proxy, unchanged, against the API server.

What openstacksdk needs (found by recording its requests, see
test_what_openstacksdk_sends):
- version discovery: GET / with Octavia's version list; it then talks to
  /v2/lbaas/... (the `self` link of the CURRENT version is http://host/v2);
- Octavia's wrappers ({"loadbalancer": {...}}; lists with *_links, whose
  `next` link it follows);
- PUT with only the changed attributes, DELETE ?cascade=True, GET by id
  then by ?name= for find_*; provisioning_status for wait_for_*.

The token: with auth_type "none", keystoneauth's NoAuth plugin always sends
`X-Auth-Token: notused`, and session.additional_headers only fills headers
that are not set yet, so the real token never leaves. auth_type
"admin_token" (keystoneauth's token_endpoint plugin) sends the given token.
"""

from __future__ import annotations

from collections.abc import Iterator

import openstack.connection
import pytest
from fastapi import FastAPI
from openstack import exceptions
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.apiserver.helpers import TOKEN_A, FakeOperator, ServerThread, vip
from xdsr.local.etcd import EtcdServer

WAIT = {"interval": 0.05, "wait": 10}
# openstacksdk warns about its own deprecations on every call.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


class Recorder:
    """Records (method, path, query, body) of every request."""

    seen: list[tuple[str, str, str, bytes]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            msg = await receive()
            messages.append(msg)
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        Recorder.seen.append((scope["method"], scope["path"], scope["query_string"].decode(), body))
        replay = iter(messages)

        async def again() -> Message:
            return next(replay)

        await self.app(scope, again, send)


@pytest.fixture(scope="module")
def recorded(etcd: EtcdServer) -> Iterator[ServerThread]:
    def prepare(app: FastAPI) -> None:
        app.add_middleware(Recorder)

    server = ServerThread(etcd.endpoint).start(prepare)
    try:
        yield server
    finally:
        server.close()


def connect(url: str, token: str = TOKEN_A) -> openstack.connection.Connection:
    return openstack.connection.Connection(
        auth_type="admin_token",
        auth={"endpoint": "http://unused", "token": token},
        load_balancer_endpoint_override=url,
    )


def test_openstacksdk_unchanged(etcd: EtcdServer, recorded: ServerThread) -> None:
    conn = connect(recorded.url)
    lbs = conn.load_balancer
    address = vip()
    with FakeOperator(etcd.endpoint):
        lb = lbs.create_load_balancer(
            name="sdk", vip_address=address, vip_subnet_id="5f4c5a4e-4a0b-4c40-9f3b-57b1d1d2b8a1"
        )
        assert lb.provisioning_status == "PENDING_CREATE" and lb.vip_address == address
        lb = lbs.wait_for_load_balancer(lb.id, **WAIT)
        assert lb.provisioning_status == "ACTIVE" and lb.operating_status == "ONLINE"

        li = lbs.create_listener(name="web", loadbalancer_id=lb.id, protocol="TCP", protocol_port=80)
        lbs.wait_for_load_balancer(lb.id, **WAIT)
        pool = lbs.create_pool(name="web", listener_id=li.id, protocol="TCP", lb_algorithm="ROUND_ROBIN")
        lbs.wait_for_load_balancer(lb.id, **WAIT)
        m1 = lbs.create_member(pool, address="192.0.2.71", protocol_port=80, weight=2)
        m2 = lbs.create_member(pool, address="192.0.2.72", protocol_port=80)
        hm = lbs.create_health_monitor(pool_id=pool.id, type="TCP", delay=5, timeout=3, max_retries=3)
        lbs.wait_for_load_balancer(lb.id, **WAIT)

        # Reads, as the SDK's resources see them.
        assert lbs.get_listener(li.id).protocol_port == 80
        got_pool = lbs.get_pool(pool.id)
        assert got_pool.lb_algorithm == "ROUND_ROBIN" and {m["id"] for m in got_pool.members} == {m1.id, m2.id}
        assert got_pool.health_monitor_id == hm.id and got_pool.provisioning_status == "ACTIVE"
        assert lbs.get_member(m1, pool).weight == 2
        assert lbs.get_health_monitor(hm.id).type == "TCP"
        assert lbs.find_load_balancer("sdk", ignore_missing=False).id == lb.id
        assert lbs.find_listener("web", ignore_missing=False).id == li.id
        assert lbs.find_pool(pool.id, ignore_missing=False).name == "web"
        assert lbs.find_member("192.0.2.71", pool, ignore_missing=True) is None  # members are found by name or id
        assert [x.id for x in lbs.load_balancers(name="sdk")] == [lb.id]
        assert {x.id for x in lbs.members(pool)} == {m1.id, m2.id}
        assert [x.id for x in lbs.health_monitors(pool_id=pool.id)] == [hm.id]
        assert [x.id for x in lbs.listeners(loadbalancer_id=lb.id)] == [li.id]
        assert lbs.get_load_balancer_statistics(lb.id).bytes_out == 0
        assert lbs.get_listener_statistics(li.id).bytes_in == 0

        # Updates send only what changed.
        assert lbs.update_load_balancer(lb, description="via sdk").description == "via sdk"
        assert lbs.update_listener(li, name="web2").name == "web2"
        assert lbs.update_pool(pool, lb_algorithm="SOURCE_IP_PORT").lb_algorithm == "SOURCE_IP_PORT"
        assert lbs.update_member(m2, pool, weight=0).weight == 0
        assert lbs.update_health_monitor(hm, delay=10).delay == 10
        assert lbs.wait_for_load_balancer(lb.id, **WAIT).provisioning_status == "ACTIVE"

        # What L2DSR cannot do arrives as the SDK's exceptions, with the reason.
        with pytest.raises(exceptions.BadRequestException, match="L2DSR"):
            lbs.create_listener(loadbalancer_id=lb.id, protocol="HTTP", protocol_port=8080)
        with pytest.raises(exceptions.ConflictException, match="already serves TCP port 80"):
            lbs.create_listener(loadbalancer_id=lb.id, protocol="TCP", protocol_port=80)
        with pytest.raises(exceptions.NotFoundException):
            lbs.get_listener("00000000-0000-4000-8000-000000000000")

        # Deletes, then the load balancer with cascade; wait_for_delete sees it go.
        lbs.delete_member(m2, pool)
        lbs.delete_health_monitor(hm)
        lbs.delete_listener(li)
        lbs.delete_pool(pool)
        assert {x.id for x in lbs.pools(loadbalancer_id=lb.id)} == set()
        lbs.wait_for_load_balancer(lb.id, **WAIT)
        lb2 = lbs.create_load_balancer(vip_address=vip())
        lbs.create_listener(loadbalancer_id=lb2.id, protocol="UDP", protocol_port=53)
        lbs.delete_load_balancer(lb.id)
        lbs.delete_load_balancer(lb2.id, cascade=True)
        lbs.wait_for_delete(lb2, **WAIT)
        lbs.wait_for_delete(lb, **WAIT)
        assert lbs.find_load_balancer(lb.id, ignore_missing=True) is None


def test_what_openstacksdk_sends(recorded: ServerThread) -> None:
    seen = Recorder.seen
    assert seen, "run after test_openstacksdk_unchanged"
    assert seen[0][:2] == ("GET", "/"), "version discovery first"
    paths = {path for _, path, _, _ in seen}
    assert all(p == "/" or p.startswith("/v2/lbaas/") for p in paths), paths
    posts = {path: body for method, path, _, body in seen if method == "POST"}
    assert b'{"loadbalancer": {' in posts["/v2/lbaas/loadbalancers"]
    puts = [body for method, path, _, body in seen if method == "PUT" and path.startswith("/v2/lbaas/listeners/")]
    assert puts == [b'{"listener": {"name": "web2"}}']
    deletes = [(path, query) for method, path, query, _ in seen if method == "DELETE" and "loadbalancers" in path]
    assert deletes[-1][1] == "cascade=True"


def test_pages_are_followed(etcd: EtcdServer, api: ServerThread) -> None:
    conn = connect(api.url)
    made = {conn.load_balancer.create_load_balancer(vip_address=vip(), name="paged").id for _ in range(5)}
    assert {x.id for x in conn.load_balancer.load_balancers(name="paged", limit=2)} == made


def test_noauth_sends_no_token(api: ServerThread) -> None:
    """Why the tests use auth_type="admin_token": NoAuth's fixed token wins
    over additional_headers."""
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": "http://unused"}, load_balancer_endpoint_override=api.url
    )
    conn.session.additional_headers = {"X-Auth-Token": TOKEN_A}
    with pytest.raises(exceptions.HttpException) as exc:
        list(conn.load_balancer.load_balancers())
    assert exc.value.status_code == 401


def test_openstacksdk_quotas(etcd: EtcdServer, recorded: ServerThread) -> None:
    """`openstack loadbalancer quota show / set / defaults show / reset` call these."""
    from tests.apiserver.helpers import PROJECT_A, TOKEN_ADMIN

    lbs = connect(recorded.url, TOKEN_ADMIN).load_balancer
    defaults = lbs.get_quota_default()
    assert (defaults.load_balancers, defaults.members, defaults.health_monitors) == (-1, -1, -1)
    q = lbs.update_quota(PROJECT_A, load_balancers=5, members=10, health_monitors=2)
    assert (q.load_balancers, q.members, q.health_monitors, q.pools) == (5, 10, 2, -1)
    got = lbs.get_quota(PROJECT_A)
    assert (got.load_balancers, got.members, got.listeners) == (5, 10, -1)
    assert [x.project_id for x in lbs.quotas()] == [PROJECT_A]
    lbs.delete_quota(PROJECT_A)
    assert lbs.get_quota(PROJECT_A).load_balancers == -1
    # A project reads its own; setting is the admin's.
    mine = connect(recorded.url).load_balancer
    assert mine.get_quota(PROJECT_A).members == -1
    with pytest.raises(exceptions.ForbiddenException):
        mine.update_quota(PROJECT_A, load_balancers=50)
