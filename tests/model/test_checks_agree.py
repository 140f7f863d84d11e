"""Every side that reads a service accepts and refuses the same ones.

Two tables. CASES holds whole services as the operator sends them, checked
by the two sides that read that schema (the agent and `xdsr dp apply`).
VALUES holds one value of one attribute (a VIP, a member's address, a MAC,
a VLAN, a table size), checked by every side that takes that attribute:
the agent, `xdsr dp apply`, the API server's request schema and the Octavia
driver. A side is a function that raises when it refuses; to add a side,
map the example into its input; to add an example, add a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from xdsr.agent import rules
from xdsr.api import schemas as api
from xdsr.dataplane.config import ConfigError, parse_config
from xdsr.model.agent import DesiredState
from xdsr.octavia import validate as octavia

Services = list[dict[str, Any]]


def _agent(services: Services) -> None:
    # What PUT /v1/state does: the schema, then the agent's checks.
    state = DesiredState.model_validate({"generation": 1, "services": services})
    rules.validate(state, max_services=64)


def _dp_apply(services: Services) -> None:
    parse_config({"services": services})


# side -> (check, the exceptions by which it refuses)
SIDES: dict[str, tuple[Callable[[Services], None], tuple[type[Exception], ...]]] = {
    "agent": (_agent, (ValidationError, rules.InvalidState)),
    "dp apply": (_dp_apply, (ConfigError,)),
}


def svc(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "lb/l",
        "vip": "203.0.113.10",
        "port": 80,
        "protocol": "tcp",
        "segment": {"type": "vlan", "id": 10},
        "backends": [{"id": "m1", "mac": "02:00:00:00:00:01", "vlan": 100}],
    }
    return {**base, **kw}


def member(**kw: Any) -> dict[str, Any]:
    return svc(backends=[{"id": "m1", "vlan": 100, **kw}])


@dataclass(frozen=True)
class Case:
    name: str
    services: Services
    accepted: bool


def ok(name: str, *services: dict[str, Any]) -> Case:
    return Case(name, list(services), True)


def bad(name: str, *services: dict[str, Any]) -> Case:
    return Case(name, list(services), False)


CASES = [
    ok("a service", svc()),
    ok("no services"),
    # VIPs
    ok("IPv6 VIP", svc(vip="2001:db8::10")),
    ok("private VIP", svc(vip="10.0.0.1")),
    bad("loopback VIP", svc(vip="127.0.0.1")),
    bad("IPv6 loopback VIP", svc(vip="::1")),
    bad("broadcast VIP", svc(vip="255.255.255.255")),
    bad("unspecified VIP", svc(vip="0.0.0.0")),
    bad("multicast VIP", svc(vip="224.0.0.1")),
    bad("IPv4-mapped VIP", svc(vip="::ffff:203.0.113.10")),
    bad("not an address", svc(vip="300.1.1.1")),
    bad("a number as VIP", svc(vip=5)),
    # member addresses
    ok("member by address", member(address="10.1.0.12")),
    ok("member by IPv6 address", member(address="fd00:1::13")),
    ok("member with MAC and address", member(address="10.1.0.12", mac="02:00:00:00:00:02")),
    bad("loopback member", member(address="127.0.0.1")),
    bad("broadcast member", member(address="255.255.255.255")),
    bad("multicast member", member(address="ff02::1")),
    bad("IPv4-mapped member", member(address="::ffff:10.0.0.1")),
    bad("member with neither MAC nor address", member()),
    # MACs
    ok("MAC in capitals with dashes", member(mac="02-00-00-00-00-AB")),
    ok("MAC without an id", svc(backends=[{"mac": "02:00:00:00:00:01", "vlan": 7}])),
    bad("malformed MAC", member(mac="zz:00:00:00:00:01")),
    bad("short MAC", member(mac="02:00:00:00:01")),
    bad("broadcast MAC", member(mac="ff:ff:ff:ff:ff:ff")),
    bad("multicast MAC", member(mac="01:00:5e:00:00:01")),
    bad("zero MAC", member(mac="00:00:00:00:00:00")),
    bad("member by address without an id", svc(backends=[{"address": "10.1.0.12", "vlan": 7}])),
    # VLANs
    ok("untagged", svc(segment={"type": "vlan", "id": 0})),
    ok("VLAN 4094", svc(segment={"type": "vlan", "id": 4094})),
    bad("VLAN 4095", svc(segment={"type": "vlan", "id": 4095})),
    bad("negative VLAN", svc(segment={"type": "vlan", "id": -1})),
    bad("VXLAN segment", svc(segment={"type": "vxlan", "id": 10})),
    bad("member VLAN 4095", member(mac="02:00:00:00:00:01", vlan=4095)),
    # weights
    ok("weight 0", member(mac="02:00:00:00:00:01", weight=0)),
    ok("largest weight", member(mac="02:00:00:00:00:01", weight=2**32 - 1)),
    bad("weight above u32", member(mac="02:00:00:00:00:01", weight=2**32)),
    bad("negative weight", member(mac="02:00:00:00:00:01", weight=-1)),
    # table sizes
    ok("prime table", svc(table_size=65537)),
    ok("smallest table", svc(table_size=2)),
    bad("table not prime", svc(table_size=65536)),
    bad("table of 1", svc(table_size=1)),
    bad("table too large", svc(table_size=2**23 + 9)),
    bad(
        "table below its members",
        svc(table_size=2, backends=[{"id": f"m{i}", "mac": f"02:00:00:00:00:0{i}"} for i in range(1, 4)]),
    ),
    ok(
        "table fits weighted members only",
        svc(table_size=2, backends=[{"id": f"m{i}", "mac": f"02:00:00:00:00:0{i}", "weight": i % 2} for i in range(4)]),
    ),
    # duplicate keys
    ok("same VIP, other port", svc(), svc(id="lb/b", port=81)),
    ok("same VIP and port, other protocol", svc(), svc(id="lb/u", protocol="udp")),
    ok("same VIP and port, other VLAN", svc(), svc(id="lb/v", segment={"type": "vlan", "id": 11})),
    ok("services without ids", svc(id=None), svc(id=None, port=81)),
    bad("same service key twice", svc(), svc(id="lb/b")),
    bad("same service id twice", svc(), svc(port=81)),
    bad("empty service id", svc(id="")),
    bad(
        "same member id twice",
        svc(backends=[{"id": "m", "mac": "02:00:00:00:00:01"}, {"id": "m", "mac": "02:00:00:00:00:02"}]),
    ),
    bad(
        "same MAC and VLAN twice, no ids",
        svc(backends=[{"mac": "02:00:00:00:00:01", "vlan": 1}, {"mac": "02:00:00:00:00:01", "vlan": 1}]),
    ),
    ok(
        "same MAC on two VLANs, no ids",
        svc(backends=[{"mac": "02:00:00:00:00:01", "vlan": 1}, {"mac": "02:00:00:00:00:01", "vlan": 2}]),
    ),
    bad("empty member id", member(id="", mac="02:00:00:00:00:01")),
    # the rest of the schema
    bad("port 0", svc(port=0)),
    bad("protocol sctp", svc(protocol="sctp")),
    bad("unknown field", svc(colour="blue")),
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_side_agrees(case: Case, side: str) -> None:
    check, refusals = SIDES[side]
    if case.accepted:
        check(case.services)
    else:
        with pytest.raises(refusals):
            check(case.services)


def test_the_table_has_both_answers() -> None:
    assert {c.accepted for c in CASES} == {True, False}
    assert len({c.name for c in CASES}) == len(CASES)


# --- one value of one attribute, on every side that takes it --------------------------------

LB_ID, LISTENER_ID, POOL_ID, MEMBER_ID = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5))


def _node_service(what: str, value: Any) -> dict[str, Any]:
    """The operator's service with `value` in place of attribute `what`."""
    backend: dict[str, Any] = {"id": "m1", "mac": "02:00:00:00:00:01", "vlan": 100}
    if what == "member address":
        backend["address"] = value
    elif what == "MAC":
        backend["mac"] = value
    elif what == "VLAN":
        backend["vlan"] = value
    service = svc(backends=[backend])
    if what == "VIP":
        service["vip"] = value
    elif what == "VLAN":
        service["segment"] = {"type": "vlan", "id": value}
    elif what == "table size":
        service["table_size"] = value
    return service


def _api_create(what: str, value: Any) -> dict[str, Any]:
    """The API's fully populated create with `value` in place of attribute `what`."""
    member_: dict[str, Any] = {"address": "10.1.0.12", "protocol_port": 80}
    pool: dict[str, Any] = {"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "members": [member_]}
    lb: dict[str, Any] = {
        "vip_address": "203.0.113.10",
        "listeners": [{"protocol": "TCP", "protocol_port": 80, "default_pool": pool}],
    }
    if what == "VIP":
        lb["vip_address"] = value
    elif what == "member address":
        member_["address"] = value
    elif what == "MAC":
        member_["mac_address"] = value
    elif what == "VLAN":
        lb["vip_segment"] = {"type": "vlan", "id": value}
        member_["segment"] = {"type": "vlan", "id": value}
    elif what == "table size":
        pool["table_size"] = value
    return {"loadbalancer": lb}


def _octavia_lb(what: str, value: Any) -> dict[str, Any]:
    """Octavia's provider objects (as the driver gets them) with `value` in place of `what`."""
    member_ = {"member_id": MEMBER_ID, "pool_id": POOL_ID, "address": "10.1.0.12", "protocol_port": 80}
    if what == "member address":
        member_["address"] = value
    return {
        "loadbalancer_id": LB_ID,
        "vip_address": value if what == "VIP" else "203.0.113.10",
        "listeners": [
            {
                "listener_id": LISTENER_ID,
                "loadbalancer_id": LB_ID,
                "protocol": "TCP",
                "protocol_port": 80,
                "default_pool_id": POOL_ID,
            }
        ],
        "pools": [
            {
                "pool_id": POOL_ID,
                "loadbalancer_id": LB_ID,
                "listener_id": LISTENER_ID,
                "protocol": "TCP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [member_],
            }
        ],
    }


# side -> (check, the attributes it takes, the exceptions by which it refuses). Octavia
# has no MAC, VLAN or table size of its own (Neutron gives the segment and the MAC).
VALUE_SIDES: dict[str, tuple[Callable[[str, Any], object], set[str], tuple[type[Exception], ...]]] = {
    "agent": (
        lambda what, v: _agent([_node_service(what, v)]),
        {"VIP", "member address", "MAC", "VLAN", "table size"},
        (ValidationError, rules.InvalidState),
    ),
    "dp apply": (
        lambda what, v: _dp_apply([_node_service(what, v)]),
        {"VIP", "member address", "MAC", "VLAN", "table size"},
        (ConfigError,),
    ),
    "API server": (
        lambda what, v: api.LoadBalancerCreateRequest.model_validate(_api_create(what, v)),
        {"VIP", "member address", "MAC", "VLAN", "table size"},
        (ValidationError,),
    ),
    "Octavia driver": (
        lambda what, v: octavia.loadbalancer(_octavia_lb(what, v)),
        {"VIP", "member address"},
        (octavia.Refused,),
    ),
}

VALUES: list[tuple[str, Any, bool]] = [
    ("VIP", "203.0.113.10", True),
    ("VIP", "2001:db8::10", True),
    ("VIP", "10.0.0.1", True),
    *(("VIP", v, False) for v in ("127.0.0.1", "::1", "255.255.255.255", "0.0.0.0", "::", "224.0.0.1", "ff02::1")),
    ("VIP", "::ffff:203.0.113.10", False),
    ("VIP", "300.1.1.1", False),
    ("VIP", 5, False),
    ("VIP", "", False),
    ("member address", "10.1.0.12", True),
    ("member address", "fd00:1::13", True),
    *(
        ("member address", v, False)
        for v in ("127.0.0.1", "::1", "255.255.255.255", "0.0.0.0", "224.0.0.1", "::ffff:10.2.0.9", 5, "x")
    ),
    ("MAC", "02:00:00:00:00:ab", True),
    ("MAC", "02-00-00-00-00-AB", True),
    *(
        ("MAC", v, False)
        for v in ("zz:00:00:00:00:01", "02:00:00:00:01", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00")
    ),
    ("VLAN", 0, True),
    ("VLAN", 4094, True),
    ("VLAN", 4095, False),
    ("VLAN", -1, False),
    ("table size", 2, True),
    ("table size", 65537, True),
    ("table size", 4_194_301, True),
    ("table size", 65536, False),
    ("table size", 1, False),
    ("table size", 4_194_319, False),  # prime, but above the bound
]


@pytest.mark.parametrize(
    ("row", "side"),
    [(row, side) for row in VALUES for side, (_, takes, _) in VALUE_SIDES.items() if row[0] in takes],
    ids=lambda x: x if isinstance(x, str) else f"{x[0]}={x[1]!r}:{'ok' if x[2] else 'refused'}",
)
def test_every_side_agrees_on_each_value(row: tuple[str, Any, bool], side: str) -> None:
    what, value, accepted = row
    check, _, refusals = VALUE_SIDES[side]
    if accepted:
        check(what, value)
    else:
        with pytest.raises(refusals):
            check(what, value)


def test_every_value_is_judged_by_every_side_that_takes_it() -> None:
    kinds = {what for what, _, _ in VALUES}
    assert kinds == set().union(*(takes for _, takes, _ in VALUE_SIDES.values()))
    assert {accepted for _, _, accepted in VALUES} == {True, False}
