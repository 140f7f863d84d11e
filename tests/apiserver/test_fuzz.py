"""Fuzz every operation of openapi.json with schemathesis against the live
server on a real etcd: no 5xx while the store is up, and every response
conforms to the document (status codes, content types, bodies).

Random ids would only ever meet 404s, so about half of the generated ids (in
paths and in bodies) are swapped for ids of real objects, created afresh for
each operation: creates, updates and deletes then run for real."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.apiserver.helpers import (
    TOKEN_A,
    TOKENS,
    ServerThread,
    create_lb,
    create_listener,
    create_member,
    create_pool,
)
from xdsr.apiserver import create_app
from xdsr.store.etcd import EtcdStore

# The document only: the app is never started here, its store never contacted.
schema = schemathesis.openapi.from_dict(create_app(EtcdStore("http://127.0.0.1:9"), TOKENS).openapi())
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])

ID_PARAMS = {
    "loadbalancer_id": "lb",
    "listener_id": "listener",
    "pool_id": "pool",
    "member_id": "member",
    "healthmonitor_id": "hm",
}


@pytest.fixture
def world(api: ServerThread) -> Iterator[dict[str, str]]:
    """Real objects of project A: a load balancer, a listener, its pool, a member, a health monitor."""
    with httpx.Client(base_url=api.url, headers={"X-Auth-Token": TOKEN_A}, timeout=10) as c:
        lb = create_lb(c, name="fuzz")
        li = create_listener(c, lb["id"], 80)
        pool = create_pool(c, listener_id=li["id"])
        member = create_member(c, pool["id"], "192.0.2.7", 80)
        r = c.post(
            "/v2/lbaas/healthmonitors",
            json={"healthmonitor": {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}},
        )
        assert r.status_code == 201, r.text
        yield {
            "lb": lb["id"],
            "listener": li["id"],
            "pool": pool["id"],
            "member": member["id"],
            "hm": r.json()["healthmonitor"]["id"],
        }


def _coin(value: Any) -> bool:
    """A deterministic coin flip on a generated value (so failures replay)."""
    return hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0


def _real_ids(case: schemathesis.Case, world: dict[str, str]) -> None:
    for name, kind in ID_PARAMS.items():
        if case.path_parameters and name in case.path_parameters and _coin(case.path_parameters[name]):
            case.path_parameters[name] = world[kind]
    if isinstance(case.body, dict):
        for inner in case.body.values():
            if isinstance(inner, dict):
                for name, kind in ID_PARAMS.items():
                    if name in inner and _coin(inner[name]):
                        inner[name] = world[kind]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_the_document(
    case: schemathesis.Case, api: ServerThread, world: dict[str, str]
) -> None:
    _real_ids(case, world)
    case.call_and_validate(
        base_url=api.url,
        headers={"X-Auth-Token": TOKEN_A},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
