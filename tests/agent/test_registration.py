"""Registration against a real etcd: the node's LbnRecord lives exactly as
long as its agent, and the agent does not care whether etcd is up."""

from __future__ import annotations

import base64
import os
import signal
import time
from typing import Any

import httpx

import xdsr
from tests.agent.conftest import services_doc
from tests.conftest import needs_root
from xdsr.lab import Fabric, wait_until
from xdsr.model.group import LbnRecord
from xdsr.model.keys import lbn_key

pytestmark = needs_root


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def record(etcd: Any, name: str) -> tuple[LbnRecord, int] | None:
    """The node's record and the lease it is attached to, read straight from
    etcd's gateway (the Store interface does not expose leases)."""
    try:
        r = httpx.post(etcd.endpoint + "/v3/kv/range", json={"key": _b64(lbn_key(name))}, timeout=2)
    except httpx.TransportError:
        return None
    kvs = r.json().get("kvs") or []
    if not kvs:
        return None
    return LbnRecord.model_validate_json(base64.b64decode(kvs[0]["value"])), int(kvs[0].get("lease", 0))


def lease_ttl(etcd: Any, lease: int) -> int:
    r = httpx.post(etcd.endpoint + "/v3/lease/timetolive", json={"ID": str(lease)}, timeout=2)
    return int(r.json()["TTL"])


def test_record_follows_the_agent_and_survives_etcd_restarts(fab: Fabric, agent_factory: Any, etcd: Any) -> None:
    name = "lbn-reg"
    store_args = ["--store", etcd.endpoint, "--group", "g1", "--advertise", "http://lbn-reg.example:9101"]
    a = agent_factory(name=name, extra=[*store_args, "--max-services", "512"])

    # Registered on a lease of the TTL asked for.
    t0 = time.time()
    a.start(extra=["--lease-ttl", "3"])
    got = wait_until(lambda: record(etcd, name), 5, what="record in etcd")
    rec, lease = got
    assert (rec.name, rec.endpoint, rec.group, rec.version) == (
        name,
        "http://lbn-reg.example:9101",
        "g1",
        xdsr.__version__,
    )
    assert t0 - 1 < rec.started_at < time.time()
    assert rec.max_services == 512, "the operator places no more than the node's maps hold"
    assert lease != 0 and 0 < lease_ttl(etcd, lease) <= 3
    assert a.metric("xdsr_agent_registered") == 1

    # The agent stalls longer than the TTL (SIGSTOP): the lease expires and
    # the record goes; once it runs again it registers on a new lease.
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: record(etcd, name) is None, 3 + 3, what="record expired while stalled")
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    rec, lease_b = wait_until(lambda: record(etcd, name), 5, what="record on a new lease")
    assert lease_b != lease
    lease = lease_b

    # kill -9: nobody revokes anything; the record goes when the lease expires.
    a.kill()
    assert record(etcd, name) is not None
    wait_until(lambda: record(etcd, name) is None, 3 + 3, what="record expired")

    # Restarted: a new record (new start time) on a new lease.
    a.start(extra=["--lease-ttl", "10"])
    rec2, lease2 = wait_until(lambda: record(etcd, name), 5, what="record back")
    assert rec2.started_at > rec.started_at and lease2 != lease

    # etcd goes away: the agent keeps serving, applying and forwarding.
    etcd.stop()
    assert a.put({"generation": 1, "services": services_doc(fab, ipv6=False)}).status_code == 200
    assert fab.tcp_client(0, conns=4, duration=0.3).all_ok
    wait_until(lambda: a.metric("xdsr_agent_registered") == 0, 6, what="agent notices the outage")
    assert a.http.get("/healthz").json()["ok"] is True

    # etcd is back (same data): the agent is registered again.
    etcd.start()
    wait_until(lambda: a.metric("xdsr_agent_registered") == 1, 8, what="registered again")
    rec3, lease3 = wait_until(lambda: record(etcd, name), 5, what="record after etcd restart")
    assert rec3.started_at == rec2.started_at and lease_ttl(etcd, lease3) > 0

    # A clean stop revokes the lease: the record goes at once, not after 10 s.
    stopped = time.monotonic()
    assert a.stop() == 0
    assert record(etcd, name) is None
    assert time.monotonic() - stopped < 5
