"""The agent end to end: a real `xdsr agent` process on an LBN trunk of a lab
fabric, driven over HTTP, with real TCP/UDP from the tenant's client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.agent.conftest import AgentProcess, services_doc
from tests.conftest import needs_root
from xdsr.lab import Fabric, wait_until

pytestmark = needs_root


def test_macs_given_traffic_flows_and_is_reported(fab: Fabric, agent: AgentProcess) -> None:
    t = fab.tenant(0)
    doc = {"generation": 1, "services": services_doc(fab)}
    r = agent.put(doc)
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["generation"] == 1 and state["error"] is None
    assert {s["id"]: (s["ok"], s["active_backends"], s["unresolved"]) for s in state["services"]} == {
        s["id"]: (True, 3, []) for s in doc["services"]
    }
    assert agent.http.get("/v1/desired").json() == {**doc, "services": [_filled(s) for s in doc["services"]]}

    tcp = fab.tcp_client(0, conns=48, interval_ms=50, duration=0.5)
    assert tcp.all_ok, tcp.broken[:3]
    assert set(tcp.by_backend()) == {b.name for b in t.backends}
    assert not fab.udp_client(0, flows=60).unanswered
    tcp6 = fab.tcp_client(0, ipv6=True, conns=12, interval_ms=50, duration=0.3)
    assert tcp6.all_ok

    assert agent.report("lb1/tcp4")["packets"] > 48 * 5
    assert agent.report("lb1/udp4")["packets"] >= 60
    labels = {"service": "lb1/tcp4", "vip": t.vip, "port": "80", "protocol": "tcp", "segment": "vlan:10"}
    before = agent.metric("xdsr_service_packets_total", **labels)
    assert before > 0
    assert fab.tcp_client(0, conns=4, interval_ms=50, duration=0.3).all_ok
    assert agent.metric("xdsr_service_packets_total", **labels) > before
    m = agent.metrics()
    assert m[("xdsr_agent_generation", ())] == 1
    assert m[("xdsr_dataplane_packets_total", (("reason", "forwarded"), ("verdict", "tx")))] > 0
    assert m[("xdsr_agent_apply_seconds_count", ())] == 1
    assert agent.http.get("/healthz").json() == {"ok": True, "name": "lbn0", "generation": 1}


def _filled(service: dict[str, Any]) -> dict[str, Any]:
    """A RuleService as the agent echoes it back: every default spelled out."""
    members = [
        {
            "address": None,
            "weight": 1,
            "mac": None,
            "monitor_address": None,
            "monitor_port": None,
            "vni": None,
            "vtep": None,
            **m,
        }
        for m in service["backends"]
    ]
    return {"table_size": None, "health": None, **service, "backends": members}


def test_generations_auth_and_invalid_input(fab: Fabric, agent: AgentProcess) -> None:
    svcs = services_doc(fab, ipv6=False)
    # Without or with a wrong token: 401, whatever the body.
    for headers in ({}, {"Authorization": f"Bearer {agent.token}x"}, {"Authorization": agent.token}):
        assert httpx.get(agent.url + "/v1/state", headers=headers).status_code == 401
        r = httpx.put(agent.url + "/v1/state", headers=headers, content=b"{not json")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(agent.url + "/healthz").status_code == 200  # no auth for health and metrics
    assert httpx.get(agent.url + "/metrics").status_code == 200

    assert agent.put({"generation": 5, "services": svcs}).status_code == 200
    applied = agent.state()
    tables = agent.table_ids()
    assert len(tables) == 2

    def bad(**change: Any) -> list[dict[str, Any]]:
        s = [dict(x) for x in svcs]
        s[0] = {**s[0], **change}
        return s

    member = svcs[0]["backends"][0]
    invalid: list[tuple[object, str]] = [
        ({"generation": 6, "services": bad(port=0)}, "services[0].port"),
        ({"generation": 6, "services": bad(backends=[{**member, "mac": "zz"}])}, "services[0].backends[0].mac"),
        ({"generation": 6, "services": bad(backends=[{"id": "x", "vlan": 100}])}, "services[0].backends[0].address"),
        ({"generation": 6, "services": bad(table_size=100)}, "services[0].table_size"),
        ({"generation": 6, "services": bad(bogus=1)}, "services[0].bogus"),
        ({"generation": 6, "services": [*svcs, {**svcs[0], "port": 81}]}, "services[2].id"),
        ({"generation": 6, "services": [*svcs, {**svcs[0], "id": "other"}]}, "services[2]"),
        ({"generation": 0, "services": svcs}, "generation"),
        ({"services": svcs}, "generation"),
    ]
    for body, field in invalid:
        r = agent.put(body)  # type: ignore[arg-type]
        assert r.status_code == 422, (field, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
        assert field in r.json()["detail"]
    r = agent.http.put("/v1/state", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    assert agent.state() == applied, "an invalid PUT changed something"

    # Older: 409 with the current state. Same: a no-op (nothing rewritten,
    # not even the apply time). Newer: diff-based apply.
    r = agent.put({"generation": 4, "services": []})
    assert r.status_code == 409 and r.json()["generation"] == 5
    r = agent.put({"generation": 5, "services": svcs})
    assert r.status_code == 200 and r.json()["applied_at"] == applied["applied_at"]
    assert agent.table_ids() == tables
    r = agent.put({"generation": 6, "services": svcs[:1]})
    assert r.status_code == 200 and [s["id"] for s in r.json()["services"]] == [svcs[0]["id"]]
    remaining = agent.table_ids()
    assert remaining == {k: v for k, v in tables.items() if k[2] == svcs[0]["protocol"]}
    assert agent.metric("xdsr_agent_applies_total", trigger="put") == 2


def test_restart_keeps_forwarding_and_adopts_the_tables(fab: Fabric, agent_factory: Any) -> None:
    """kill -9 while connections run: none breaks; the new agent adopts the
    pinned tables (generation 0 until the operator re-sends), and re-sending
    the same services rewrites no table -- members given by address included,
    whose MACs come from the cache the first agent saved."""
    a = agent_factory(extra=["--resolve-interval", "2"]).start()
    doc = {
        "generation": 3,
        "services": services_doc(fab, by_address=True, ipv6=False, protocols=("tcp",))
        + services_doc(fab, ipv6=True, protocols=("tcp",)),
    }
    assert a.put(doc).status_code == 200
    tables = a.table_ids()
    assert len(tables) == 2
    session = fab.tcp_session(0, conns=16, interval_ms=50)
    try:
        a.kill()
        assert a.proc is not None and a.proc.returncode == -9
        forwarded = a.installed()
        a.start()  # within its own deadline: how fast is the benchmarks' business, not a test's
        state = a.state()
        assert state["generation"] == 0 and state["services"] == []
        assert a.http.get("/v1/desired").json() is None
        assert a.installed() == forwarded
        # The adopted services are counted, without a rule id until re-sent.
        fab.tcp_client(0, conns=2, duration=0.2)
        assert a.metric("xdsr_service_packets_total", service="", port="80") > 0

        r = a.put(doc)
        assert r.status_code == 200, r.text
        assert r.json()["generation"] == 3
        assert all(s["active_backends"] == 3 and not s["unresolved"] for s in r.json()["services"])
        assert a.table_ids() == tables, "re-sending the same services rewrote tables"
        # The MACs came from the cache (nothing had to be resolved before the
        # apply); the background refresh then confirms them on the wire.
        assert a.metric("xdsr_agent_resolutions_total", result="resolved") == 0
        wait_until(lambda: a.metric("xdsr_agent_resolutions_total", result="confirmed") >= 3, 5)
        assert not session.broken_events()
    finally:
        result = session.stop()
    assert result.all_ok, result.broken[:3]
    assert not result.switched


def test_a_node_restarted_with_purged_maps_takes_the_whole_group_and_forwards_it(
    fab: Fabric, agent_factory: Any
) -> None:
    """A restarted node whose program was detached and maps purged (a new
    node, as far as it knows) is sent its group's full state by the
    operator's client, as the operator sends it: it held nothing, then holds
    every service, with the very tables it had built before, and forwards.
    How fast is the benchmarks' business (scripts/bench_resync.py, `xdsr
    bench control-plane`)."""
    import asyncio

    from xdsr.dataplane.loader import Dataplane, remove_pins
    from xdsr.dataplane.state import installed
    from xdsr.model.agent import DesiredState
    from xdsr.operator.agents import AgentClient

    filler = [
        {
            "id": f"lb{i}/l",
            "vip": f"198.51.{100 + (i >> 8)}.{i & 255}",
            "port": 80,
            "protocol": "tcp",
            "segment": {"id": 10},
            "table_size": 1009,
            "backends": [
                {"id": f"lb{i}-m{j}", "mac": f"02:51:{i >> 8:02x}:{i & 255:02x}:00:{j + 1:02x}", "vlan": 100}
                for j in range(10)
            ],
        }
        for i in range(1700)
    ]
    group = DesiredState.model_validate(
        {"generation": 5, "epoch": "g", "services": services_doc(fab, ipv6=False) + filler}
    )
    a = agent_factory(extra=["--max-services", "2048"])

    def push() -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            client = AgentClient(a.token)
            try:
                got, sent = await client.push(a.url, group)
                assert sent > 1 << 20  # a whole group: the collector's pause too (agent/api.py)
                return got.model_dump()
            finally:
                await client.close()

        return asyncio.run(send())

    def tables() -> dict[object, list[int]]:
        with Dataplane.open(a.pin_dir) as dp:
            return {s.service.key: s.slots.tolist() for s in installed(dp, with_slots=True) if s.slots is not None}

    a.start()
    got = push()
    assert got["generation"] == 5 and len(got["services"]) == len(group.services)
    built = tables()
    assert len(built) == len(group.services)
    a.stop()
    ns, ifname, _ = fab.lbn_trunk(0)
    with Dataplane.open(a.pin_dir) as dp:
        dp.detach(ifname, netns=ns)
    remove_pins(a.pin_dir)

    a.start()
    state = a.state()
    assert state["generation"] == 0 and state["services"] == []
    assert tables() == {}
    got = push()
    assert got["generation"] == 5 and got["epoch"] == "g"
    assert all(s["ok"] and s["active_backends"] > 0 for s in got["services"])
    assert tables() == built, "the node built other tables for the same services"
    assert fab.tcp_client(0, conns=6, duration=0.3).all_ok


def test_sigterm_leaves_the_program_forwarding(fab: Fabric, agent: AgentProcess) -> None:
    assert agent.put({"generation": 1, "services": services_doc(fab, ipv6=False)}).status_code == 200
    assert agent.stop() == 0
    assert "stays attached" in agent.log()
    show = agent.dp_show()
    assert [a["live"] for a in show["attachments"]] == [True]
    assert fab.tcp_client(0, conns=6, duration=0.3).all_ok


def test_refuses_a_weak_token(agent_factory: Any) -> None:
    a = agent_factory()
    a.token_file.write_text("short")
    with pytest.raises(AssertionError, match="exited with 2"):
        a.start()
    assert "at least 16 characters" in a.log()
