"""DesiredState -> data-plane Services: every error names its field; members
without a MAC are left out, never guessed. No root needed."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from xdsr.agent import rules
from xdsr.dataplane.model import Backend
from xdsr.maglev import default_table_size
from xdsr.model.agent import DesiredState


def state(*services: dict[str, Any], generation: int = 1) -> DesiredState:
    return DesiredState.model_validate({"generation": generation, "services": list(services)})


def svc(**kw: Any) -> dict[str, Any]:
    base = {
        "id": "lb/l",
        "vip": "203.0.113.10",
        "port": 80,
        "protocol": "tcp",
        "segment": {"id": 10},
        "backends": [
            {"id": "m1", "mac": "02:00:00:00:00:01", "vlan": 100},
            {"id": "m2", "address": "10.1.0.12", "vlan": 100},
            {"id": "m3", "address": "fd00:1::13", "vlan": 100, "weight": 2},
        ],
    }
    return {**base, **kw}


def errors(s: DesiredState, max_services: int = 64) -> dict[str, str]:
    with pytest.raises(rules.InvalidState) as exc:
        rules.validate(s, max_services)
    return {e.field: e.message for e in exc.value.errors}


def test_a_valid_state_passes() -> None:
    rules.validate(state(svc(), svc(id="lb/u", protocol="udp")), 64)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"backends": [{"id": "x", "mac": "zz"}]}, "services[0].backends[0].mac", "invalid MAC"),
        ({"backends": [{"id": "x", "mac": "01:00:5e:00:00:01"}]}, "services[0].backends[0].mac", "multicast"),
        ({"backends": [{"id": "x", "mac": "00:00:00:00:00:00"}]}, "services[0].backends[0].mac", "zero"),
        ({"backends": [{"id": "x", "vlan": 5}]}, "services[0].backends[0].address", "required"),
        ({"backends": [{"id": "x", "address": "224.0.0.1"}]}, "services[0].backends[0].address", "unicast"),
        ({"backends": [{"id": "x", "address": "::ffff:10.0.0.1"}]}, "services[0].backends[0].address", "IPv4-mapped"),
        ({"backends": [{"id": "", "mac": "02:00:00:00:00:01"}]}, "services[0].backends[0].id", "empty"),
        (
            {"backends": [{"id": "x", "mac": "02:00:00:00:00:01", "weight": 2**32}]},
            "services[0].backends[0].weight",
            "above",
        ),
        ({"table_size": 100}, "services[0].table_size", "not prime"),
        ({"table_size": 2}, "services[0].table_size", "below the 3"),
        ({"table_size": 2**23 + 9}, "services[0].table_size", "outside"),
        ({"vip": "0.0.0.0"}, "services[0].vip", "unicast"),
        ({"id": ""}, "services[0].id", "empty"),
    ],
)
def test_each_error_names_its_field(change: dict[str, Any], field: str, words: str) -> None:
    errs = errors(state(svc(**change)))
    assert field in errs and words in errs[field], errs


def test_duplicates_across_services_and_members() -> None:
    dup_member = svc(backends=[{"id": "m", "mac": "02:00:00:00:00:01"}, {"id": "m", "mac": "02:00:00:00:00:02"}])
    assert "services[0].backends[1].id" in errors(state(dup_member))
    errs = errors(state(svc(), svc(port=81), svc(id="lb/other")))
    assert "already services[0]" in errs["services[1].id"]
    assert "already services[0]" in errs["services[2]"]
    assert "holds 1" in errors(state(svc(), svc(id="b", port=81)), max_services=1)["services"]


def test_build_leaves_unresolved_members_out_but_sizes_the_table_for_all() -> None:
    known = {(100, ipaddress.ip_address("10.1.0.12")): "02:00:00:00:00:02"}
    (built,) = rules.build(state(svc()), known.get)
    assert built.rule_id == "lb/l" and built.unresolved == ("m3",)
    assert built.service.backends == (
        Backend("02:00:00:00:00:01", 100, 1, "m1"),
        Backend("02:00:00:00:00:02", 100, 1, "m2"),
    )
    # Three weighted members, resolved or not: the size does not move when m3 resolves.
    assert built.service.table_size == default_table_size(3)
    assert built.active_backends == 2
    known[(100, ipaddress.ip_address("fd00:1::13"))] = "02:00:00:00:00:03"
    (later,) = rules.build(state(svc()), known.get)
    assert later.unresolved == () and later.service.table_size == built.service.table_size
    assert later.service.backends[2] == Backend("02:00:00:00:00:03", 100, 2, "m3")


def test_given_mac_wins_over_address_and_is_normalized() -> None:
    s = svc(backends=[{"id": "m", "mac": "02-00-00-00-00-AB", "address": "10.9.9.9", "vlan": 7}])
    assert rules.needed_neighbors(state(s)) == set()
    (built,) = rules.build(state(s), lambda k: None)
    assert built.service.backends == (Backend("02:00:00:00:00:ab", 7, 1, "m"),)


def test_needed_neighbors_are_per_vlan() -> None:
    s = svc(backends=[{"id": "a", "address": "10.1.0.1", "vlan": 100}, {"id": "b", "address": "10.1.0.1", "vlan": 200}])
    assert rules.needed_neighbors(state(s)) == {
        (100, ipaddress.ip_address("10.1.0.1")),
        (200, ipaddress.ip_address("10.1.0.1")),
    }


def test_a_hand_written_state_without_ids_is_reported_by_key_and_mac() -> None:
    """What `xdsr dp apply` files may leave out, an agent takes too."""
    s = svc(backends=[{"mac": "02:00:00:00:00:01", "vlan": 100}, {"id": "m2", "mac": "02:00:00:00:00:02", "vlan": 100}])
    del s["id"]
    rules.validate(state(s), 64)
    (built,) = rules.build(state(s), lambda k: None)
    assert built.rule_id == "203.0.113.10:80/tcp vlan 10"
    assert [b.identity for b in built.service.backends] == ["02:00:00:00:00:01@100", "m2"]
    no_id_by_address = svc(backends=[{"address": "10.1.0.12", "vlan": 100}])
    assert "required" in errors(state(no_id_by_address))["services[0].backends[0].id"]


def _overlay_state() -> DesiredState:
    return DesiredState.model_validate(
        {
            "generation": 1,
            "services": [
                {
                    "id": "lb1/l1",
                    "vip": "203.0.113.10",
                    "port": 80,
                    "protocol": "tcp",
                    "segment": {"type": "vxlan", "id": 5000},
                    "backends": [
                        {
                            "id": "m1",
                            "address": "10.0.0.5",
                            "mac": "02:00:00:00:00:01",
                            "vni": 6000,
                            "vtep": "192.0.2.21",
                        },
                        {
                            "id": "m2",
                            "address": "10.0.0.6",
                            "mac": "02:00:00:00:00:02",
                            "vni": 6000,
                            "vtep": "192.0.2.22",
                        },
                        {"id": "m3", "address": "10.0.0.7", "vni": 6000, "vtep": "192.0.2.21"},
                    ],
                }
            ],
        }
    )


def test_overlay_members_resolve_the_underlay_next_hop_not_their_address() -> None:
    """Behind a tunnel the node asks the trunk's untagged underlay for the
    next hop towards the member's endpoint (the endpoint itself, or the
    configured underlay router); never for the tenant address, and a member
    without its inner MAC stays out."""
    state = _overlay_state()
    ip = ipaddress.ip_address
    assert rules.needed_neighbors(state) == {(0, ip("192.0.2.21")), (0, ip("192.0.2.22"))}
    router = ip("192.0.2.254")
    assert rules.needed_neighbors(state, router) == {(0, router)}

    macs = {(0, ip("192.0.2.21")): "02:00:00:00:ff:21"}
    (built,) = rules.build(state, macs.get)
    assert built.unresolved == ("m2", "m3")  # m2: no next hop yet; m3: no inner MAC
    (be,) = built.service.backends
    assert (be.mac, be.vni, str(be.vtep), be.hop_mac) == ("02:00:00:00:00:01", 6000, "192.0.2.21", "02:00:00:00:ff:21")
    (built,) = rules.build(state, {(0, router): "02:00:00:00:ff:fe"}.get, router)
    assert built.unresolved == ("m3",)
    assert [b.hop_mac for b in built.service.backends] == ["02:00:00:00:ff:fe"] * 2
    assert built.service.table_size == default_table_size(3)
