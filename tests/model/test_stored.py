"""The stored load balancer (model/loadbalancer.py): its addresses are parsed
by checks.ip_address (StoredAddress) and no longer by pydantic's
IPvAnyAddress, accepting and refusing what IPvAnyAddress did (numbers
aside, which it took for addresses), shown the same in JSON and in JSON
schema; and its deep copy (the API server's copy of a document it edits)
shares nothing that can change."""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import pytest
from pydantic import BaseModel, IPvAnyAddress, TypeAdapter, ValidationError

from tests.model.test_checks_fast import _texts
from xdsr.model.agent import Segment
from xdsr.model.checks import StoredAddress
from xdsr.model.loadbalancer import LoadBalancer, Member

NOW = "2026-12-05T00:00:00Z"
OLD: TypeAdapter[Any] = TypeAdapter(IPvAnyAddress)
NEW: TypeAdapter[Any] = TypeAdapter(StoredAddress)


def _parsed(adapter: TypeAdapter[Any], raw: str) -> object:
    try:
        return adapter.validate_json(raw)
    except ValidationError:
        return None


def test_a_stored_address_is_accepted_and_refused_as_ipvanyaddress_did() -> None:
    for text in _texts():
        raw = json.dumps(text)
        assert _parsed(NEW, raw) == _parsed(OLD, raw), text


@pytest.mark.parametrize("raw", ["5", "4294967295", "true", "null", "[1]", '{"a": 1}', "1.5"])
def test_a_stored_address_that_is_not_text_is_refused(raw: str) -> None:
    assert _parsed(NEW, raw) is None


def test_a_stored_address_reads_and_writes_as_before() -> None:
    class Old(BaseModel):
        a: IPvAnyAddress
        b: IPvAnyAddress | None = None

    class New(BaseModel):
        a: StoredAddress
        b: StoredAddress | None = None

    for raw in ('{"a": "10.1.2.3", "b": "2001:db8::1"}', '{"a": "::ffff:1.2.3.4"}', '{"a": "fe80::1%eth0"}'):
        old, new = Old.model_validate_json(raw), New.model_validate_json(raw)
        assert new.model_dump() == old.model_dump()  # ipaddress objects in Python
        assert new.model_dump_json() == old.model_dump_json()  # text in JSON
        assert new.model_dump(mode="json") == old.model_dump(mode="json")
    for mode in ("validation", "serialization"):
        assert New.model_json_schema(mode=mode)["properties"] == Old.model_json_schema(mode=mode)["properties"]
    assert LoadBalancer.model_fields["vip_address"].annotation is not IPvAnyAddress


def _lb(members: int) -> LoadBalancer:
    return LoadBalancer.model_validate(
        {
            "id": "lb1",
            "project_id": "p",
            "created_at": NOW,
            "vip_address": "203.0.113.10",
            "vip_segment": {"type": "vlan", "id": 10},
            "tags": ["a"],
            "listeners": [{"id": "l1", "project_id": "p", "created_at": NOW, "protocol": "TCP", "protocol_port": 80}],
            "pools": [
                {
                    "id": "p1",
                    "project_id": "p",
                    "created_at": NOW,
                    "protocol": "TCP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "members": [
                        {
                            "id": f"m{j}",
                            "project_id": "p",
                            "created_at": NOW,
                            "address": f"10.0.0.{j + 1}",
                            "protocol_port": 80,
                            "tags": [f"t{j}"],
                            "segment": {"type": "vlan", "id": 20},
                        }
                        for j in range(members)
                    ],
                }
            ],
        }
    )


def test_a_deep_copy_is_equal_and_independent() -> None:
    lb = _lb(5)
    before = lb.model_dump_json()
    for c in (lb.model_copy(deep=True), copy.deepcopy(lb)):
        assert c == lb and c.model_dump_json() == before
        assert c.model_fields_set == lb.model_fields_set and c.model_fields_set is not lb.model_fields_set
        # Every mutable part is a copy: changing the copy leaves the original as it was.
        c.tags.append("b")
        c.listeners[0].protocol_port = 81
        pool = c.pools[0]
        pool.members.append(Member(id="m9", project_id="p", created_at=NOW, address="10.0.0.9", protocol_port=80))
        pool.members[0].tags.append("x")
        pool.members[1].address = ipaddress.ip_address("10.9.9.9")
        # A segment is frozen (shared by the copies): replaced, never changed.
        assert pool.members[2].segment is not None
        with pytest.raises(ValidationError, match="frozen"):
            pool.members[2].segment.id = 30
        pool.members[2].segment = Segment(type="vlan", id=30)
        c.vip_segment = Segment(type="vlan", id=11)
        assert lb.model_dump_json() == before
