"""xdsr's LB nodes endpoint (GET /v2/lbaas/xdsr/lbns): admin only; each
node's group, liveness and BGP state as it registered it, and the VIPs it
forwards split into those it announces and those it withholds (from the
load balancers' statuses, which the operator writes; here the test writes
what the operator and the agents would)."""

from __future__ import annotations

import time

import httpx

from tests.apiserver.helpers import ServerThread, create_lb, eventually, run
from xdsr.model import keys
from xdsr.model.group import Group, LbnRecord
from xdsr.model.loadbalancer import LbnReport, LoadBalancerStatus
from xdsr.store.docs import dump
from xdsr.store.etcd import EtcdStore

PATH = "/v2/lbaas/xdsr/lbns"


def put_docs(endpoint: str, docs: dict[str, object]) -> None:
    async def body() -> None:
        store = EtcdStore(endpoint)
        try:
            for key, doc in docs.items():
                await store.put(key, dump(doc))  # type: ignore[arg-type]
        finally:
            await store.close()

    run(body())


def record(name: str, bgp: str | None) -> LbnRecord:
    return LbnRecord(name=name, endpoint=f"http://{name}:9101", started_at=time.time(), version="t", bgp=bgp)


def test_nodes_with_their_bgp_state_and_what_they_announce(
    api: ServerThread, a: httpx.Client, admin: httpx.Client
) -> None:
    lb = create_lb(a)
    prefix = f"{lb['vip_address']}/32"
    status = LoadBalancerStatus(
        id=lb["id"],
        observed_generation=1,
        group="g1",
        operating_status="DEGRADED",
        lbns={
            "n0": LbnReport(applied_generation=5, forwarding=True, bgp="announcing", announcing=True),
            "n1": LbnReport(applied_generation=5, forwarding=True, bgp="drained", announcing=False),
            "n2": LbnReport(applied_generation=5, forwarding=True, bgp="announcing; sessions down: rt_a, rt_b"),
        },
    )
    put_docs(
        api.endpoint,
        {
            keys.group_key("g1"): Group(name="g1", lbns=["n0", "n1", "n2", "n3"]),
            keys.lbn_key("n0"): record("n0", "announcing"),
            keys.lbn_key("n1"): record("n1", "drained"),
            keys.lbn_key("n2"): record(
                "n2", "withdrawn: XDP program 9 is no longer attached to eth1; sessions down: rt_a"
            ),
            keys.lbn_key("n4"): record("n4", None),  # no BGP, no group yet
            keys.status_key(lb["id"]): status,
        },
    )

    def listed() -> dict[str, dict[str, object]]:
        r = admin.get(PATH)
        assert r.status_code == 200, r.text
        nodes = {n["name"]: n for n in r.json()["lbns"]}
        assert nodes["n1"]["withheld"] == [prefix]  # the status is in the API server's cache
        return nodes

    nodes = eventually(listed)
    assert list(nodes) == ["n0", "n1", "n2", "n3", "n4"]
    n0, n1, n2, n3, n4 = nodes.values()
    assert n0["bgp"] == {"state": "announcing", "reason": None, "sessions_down": [], "announcing": True}
    assert (n0["announced"], n0["withheld"], n0["group"], n0["alive"]) == ([prefix], [], "g1", True)
    assert n1["bgp"]["state"] == "drained" and not n1["bgp"]["announcing"]
    assert n2["bgp"] == {
        "state": "withdrawn",
        "reason": "XDP program 9 is no longer attached to eth1",
        "sessions_down": ["rt_a"],
        "announcing": False,
    }
    assert n2["announced"] == n2["withheld"] == []  # its report says no BGP verdict for this load balancer
    assert n3 == {**n3, "alive": False, "group": "g1", "bgp": None, "endpoint": None, "announced": []}
    assert n4["alive"] and n4["group"] is None and n4["bgp"] is None

    one = admin.get(f"{PATH}/n1")
    assert one.status_code == 200 and one.json()["lbn"] == n1
    assert admin.get(f"{PATH}/nope").status_code == 404


def test_admin_only(a: httpx.Client, api: ServerThread) -> None:
    r = a.get(PATH)
    assert r.status_code == 403 and "admin" in r.json()["faultstring"]
    assert a.get(f"{PATH}/n0").status_code == 403
    assert httpx.get(api.url + PATH).status_code == 401
