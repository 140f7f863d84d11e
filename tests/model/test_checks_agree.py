"""Every side that reads a service accepts and refuses the same ones.

One table of examples, one column per side. A side is a function that takes
the services (as the operator would send them) and raises when it refuses
them. To add a side (the API server, the Octavia driver), map the example
into its input and add it to SIDES; to add an example, add a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from xdsr.agent import rules
from xdsr.dataplane.config import ConfigError, parse_config
from xdsr.model.agent import DesiredState

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
