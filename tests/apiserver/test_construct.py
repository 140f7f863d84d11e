"""attributes.construct makes the very object pydantic's model_construct
makes (the API server builds every stored object of a create with it):
the same attributes in the same order, the same defaults (fresh ones where
they can change), the same fields set. No etcd needed."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import BaseModel

from xdsr.apiserver.attributes import construct
from xdsr.model.agent import Segment
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool

NOW = "2026-12-05T00:00:00Z"
BASE = {"id": "x", "project_id": "p", "created_at": NOW}

CASES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (Member, {**BASE, "address": ipaddress.ip_address("10.0.0.1"), "protocol_port": 80}),
    (
        Member,
        {
            **BASE,
            "address": ipaddress.ip_address("2001:db8::1"),
            "protocol_port": 80,
            "weight": 0,
            "mac_address": "02:00:00:00:00:01",
            "segment": Segment(type="vxlan", id=7),
            "vtep_address": ipaddress.ip_address("192.0.2.1"),
            "tags": ["a"],
            "name": "m",
        },
    ),
    (Pool, {**BASE, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}),
    (Listener, {**BASE, "protocol": "UDP", "protocol_port": 53, "default_pool_id": "p1"}),
    (HealthMonitor, {**BASE, "pool_id": "p1", "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}),
    (LoadBalancer, {**BASE, "vip_address": ipaddress.ip_address("203.0.113.1")}),
    (LoadBalancer, {**BASE, "vip_address": ipaddress.ip_address("203.0.113.1"), "lbn_group": "g1", "tags": []}),
    (Member, {"id": "x", "protocol_port": 80}),  # required attributes missing: as model_construct leaves them
    (Member, {**BASE, "address": ipaddress.ip_address("10.0.0.1"), "protocol_port": 80, "unknown": 1}),
]


def _parts(m: BaseModel) -> tuple[object, ...]:
    return (
        type(m),
        list(m.__dict__.items()),
        m.model_fields_set,
        m.__pydantic_extra__,
        m.__pydantic_private__,
    )


@pytest.mark.parametrize(("model", "values"), CASES)
def test_construct_makes_what_model_construct_makes(model: type[BaseModel], values: dict[str, Any]) -> None:
    ours, theirs = construct(model, dict(values)), model.model_construct(**dict(values))
    assert _parts(ours) == _parts(theirs)
    if model.model_fields.keys() <= values.keys() | {n for n, f in model.model_fields.items() if not f.is_required()}:
        assert ours.model_dump_json() == theirs.model_dump_json()


@pytest.mark.parametrize(("model", "values"), CASES[:7])
def test_defaults_that_can_change_are_not_shared(model: type[BaseModel], values: dict[str, Any]) -> None:
    one, two = construct(model, dict(values)), construct(model, dict(values))
    for name, value in one.__dict__.items():
        if name not in values and isinstance(value, list | dict | BaseModel):
            assert value is not two.__dict__[name], name
            assert value is not model.model_fields[name].default, name
