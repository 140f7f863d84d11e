"""The API server's field lists are derived from the vocabulary's schemas and
the stored model (xdsr.apiserver.attributes, listing.filters): what a create
copies, what an update changes, what a response shows, what a list filters.
An attribute added to the stored model and the schemas goes through every
one of them with no other edit; one added to a response only is refused at
import."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from xdsr.api import l2dsr
from xdsr.api import schemas as s
from xdsr.api.fields import is_refused
from xdsr.apiserver import ops, render
from xdsr.apiserver.attributes import Rendering, Update, create
from xdsr.apiserver.errors import ApiError
from xdsr.apiserver.listing import filters
from xdsr.apiserver.routes import healthmonitors, listeners, loadbalancers, members, pools
from xdsr.model.checks import IPAddress
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool

NOW = "2026-01-01T00:00:00"

# (update schema, stored model, what the API server derived, relations updated on their own)
UPDATES = [
    (s.LoadBalancerUpdate, LoadBalancer, ops.LB_UPDATE, set()),
    (s.ListenerUpdate, Listener, ops.LISTENER_UPDATE, {"default_pool_id"}),
    (s.PoolUpdate, Pool, ops.POOL_UPDATE, set()),
    (s.MemberUpdate, Member, ops.MEMBER_UPDATE, set()),
    (s.HealthMonitorUpdate, HealthMonitor, ops.HM_UPDATE, set()),
]
# (response schema, stored model, the list's filters)
LISTS = [
    (s.LoadBalancerOut, LoadBalancer, loadbalancers.LB_FILTERS),
    (s.ListenerOut, Listener, listeners.LISTENER_FILTERS),
    (s.PoolOut, Pool, pools.POOL_FILTERS),
    (s.MemberOut, Member, members.MEMBER_FILTERS),
    (s.HealthMonitorOut, HealthMonitor, healthmonitors.HM_FILTERS),
]


@pytest.mark.parametrize(("schema", "stored", "update", "relations"), UPDATES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_attribute_of_an_update_is_updatable_or_refused(
    schema: type[BaseModel], stored: type[BaseModel], update: Update, relations: set[str]
) -> None:
    for name, field in schema.model_fields.items():
        if name in relations:
            assert name not in update.names
        elif is_refused(field):
            assert name not in update.names, f"{schema.__name__}.{name} is refused, yet updatable"
        else:
            assert name in update.names, f"{schema.__name__}.{name} is accepted but never applied"
            assert (name in update.nullable) == (None in _nulls(stored, name)), name


def _nulls(stored: type[BaseModel], name: str) -> set[Any]:
    """{None} if the stored model takes null for this attribute."""
    try:
        stored.__pydantic_validator__.validate_assignment(stored.model_construct(), name, None)
    except ValidationError:
        return set()
    return {None}


@pytest.mark.parametrize(("out", "stored", "list_filters"), LISTS, ids=lambda x: getattr(x, "__name__", ""))
def test_lists_filter_on_every_scalar_attribute_they_show(
    out: type[BaseModel], stored: type[BaseModel], list_filters: dict[str, Any]
) -> None:
    assert set(list_filters) <= set(out.model_fields)
    assert list_filters == filters(out)
    for name in set(out.model_fields) & set(stored.model_fields):
        value = stored.model_fields[name].annotation
        if value in (str, int, bool) or value == str | None or value == int | None:
            assert name in list_filters, f"{out.__name__}.{name} is shown but not filterable"


def test_filter_kinds_follow_octavia() -> None:
    assert members.MEMBER_FILTERS["address"] is IPAddress  # compared as addresses, not text
    assert members.MEMBER_FILTERS["monitor_address"] is IPAddress
    assert loadbalancers.LB_FILTERS["vip_address"] is IPAddress
    assert members.MEMBER_FILTERS["protocol_port"] is int and members.MEMBER_FILTERS["backup"] is bool
    assert "segment" not in members.MEMBER_FILTERS  # an object
    # Always null here; Octavia filters hsts_max_age as a number and allowed_cidrs not at all.
    assert listeners.LISTENER_FILTERS["hsts_max_age"] is int
    assert "allowed_cidrs" not in listeners.LISTENER_FILTERS
    assert "tags" not in pools.POOL_FILTERS  # tags filter through tags, tags-any, ...


def test_response_shows_stored_attributes_and_neutral_values() -> None:
    m = ops.build_member(
        s.MemberInline(address="2001:db8::5", protocol_port=80, mac_address="02-00-00-00-00-AB", tags=["a"]),
        "p",
        NOW,
    )
    out = render.MEMBER(m, provisioning_status="ACTIVE", operating_status="ONLINE")
    assert list(out) == list(s.MemberOut.model_fields)
    assert out["address"] == "2001:db8::5" and out["mac_address"] == "02:00:00:00:00:ab"
    assert out["vnic_type"] == "normal" and out["backup"] is False and out["segment"] is None
    li = ops.build_listener(s.ListenerInline(protocol="TCP", protocol_port=80), "p", NOW)
    shown = render.LISTENER(li, provisioning_status="ACTIVE", operating_status="ONLINE", loadbalancers=[])
    assert shown["client_authentication"] == "NONE" and shown["sni_container_refs"] == []
    assert shown["hsts_max_age"] is None and shown["connection_limit"] == -1
    shown["sni_container_refs"].append("x")  # each response gets its own neutral list
    again = render.LISTENER(li, provisioning_status="ACTIVE", operating_status="ONLINE", loadbalancers=[])
    assert again["sni_container_refs"] == []


def test_an_attribute_added_to_the_stored_model_and_the_schemas_needs_no_other_edit() -> None:
    """A new member attribute, `colour`, written only in the stored model and
    in the request, update and response schemas: created, updated, cleared,
    rendered and filterable through the API server's own derivations."""

    class ColourMember(Member):
        colour: str | None = None

    class ColourInline(s.MemberInline):
        colour: s.Name | None = None

    class ColourUpdate(s.MemberUpdate):
        colour: s.Name | None = None

    class ColourOut(s.MemberOut):
        colour: str | None

    m = create(ColourMember, ColourInline(address="10.1.0.5", protocol_port=80, colour="red"), id="m", **_ids())
    assert m.colour == "red" and str(m.address) == "10.1.0.5"

    update = Update(ColourUpdate, ColourMember)
    assert "colour" in update.names and "colour" in update.nullable
    assert ops.set_fields(m, ColourUpdate(colour="blue"), "member", update) and m.colour == "blue"
    assert ops.set_fields(m, ColourUpdate(colour=None), "member", update) and m.colour is None
    with pytest.raises(ApiError, match="may not be null"):
        ops.set_fields(m, ColourUpdate(weight=None), "member", update)

    m.colour = "green"
    shown = Rendering(ColourMember, ColourOut, render.STATUSES)(m, provisioning_status="x", operating_status="y")
    assert shown["colour"] == "green"
    assert filters(ColourOut)["colour"] is str


def test_a_response_attribute_with_no_source_is_refused_at_import() -> None:
    class Forgotten(s.MemberOut):
        colour: str  # neither stored, nor given a neutral value, nor computed

    with pytest.raises(TypeError, match=r"Forgotten\.colour"):
        Rendering(Member, Forgotten, render.STATUSES)


def test_refused_attributes_are_never_copied() -> None:
    m = create(Member, s.MemberInline(address="10.1.0.5", protocol_port=80, backup=False), id="m", **_ids())
    assert m.backup is False
    li = create(Listener, s.ListenerInline(protocol="TCP", protocol_port=80, connection_limit=-1), id="l", **_ids())
    assert li.connection_limit == -1


def test_health_monitor_types_come_from_one_list() -> None:
    body = {"type": "SCTP", "delay": 5, "timeout": 3, "max_retries": 3}
    with pytest.raises(ValidationError, match="xdsr serves no SCTP pools"):
        s.HealthMonitorInline.model_validate(body)
    for kind in l2dsr.HM_TYPES:
        assert s.HealthMonitorInline.model_validate({**body, "type": kind}).type == kind
    assert set(l2dsr.UDP_POOL_MONITORS) <= set(l2dsr.HM_TYPES) and set(l2dsr.HTTP_MONITORS) <= set(l2dsr.HM_TYPES)


# The addresses nothing can send to (or that are written as numbers): refused
# as a VIP, a member's address and its monitor address alike (issue 11).
NOT_UNICAST = ["224.0.0.1", "0.0.0.0", "255.255.255.255", "127.0.0.1", "::1", "::ffff:10.2.0.9", 5]


@pytest.mark.parametrize("address", NOT_UNICAST, ids=str)
@pytest.mark.parametrize(
    ("schema", "body", "field"),
    [
        (s.LoadBalancerCreate, {}, "vip_address"),
        (s.MemberCreate, {"protocol_port": 80}, "address"),
        (s.MemberCreate, {"address": "10.1.0.5", "protocol_port": 80}, "monitor_address"),
        (s.MemberUpdate, {}, "monitor_address"),
    ],
    ids=["vip", "member", "monitor", "monitor-update"],
)
def test_addresses_that_are_not_unicast_are_refused(
    schema: type[BaseModel], body: dict[str, Any], field: str, address: object
) -> None:
    with pytest.raises(ValidationError) as err:
        schema.model_validate({**body, field: address})
    assert [e["loc"][0] for e in err.value.errors()] == [field]


def _ids() -> dict[str, str]:
    return {"project_id": "p", "created_at": NOW}
