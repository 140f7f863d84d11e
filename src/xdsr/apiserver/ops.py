"""Changes to a load balancer's document: build new objects from requests,
check them against the document (document.py), apply them.

The check-and-apply functions run inside update_doc's compare-and-swap loop:
they see the freshest document, may run more than once, and must not have
side effects. Ids and timestamps are therefore chosen before (the builders),
and every refusal is an ApiError raised before anything is written.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from xdsr.api import schemas as s
from xdsr.apiserver.attributes import Update, create
from xdsr.apiserver.document import (
    check_attach,
    check_hm,
    check_member,
    check_members,
    check_port_free,
    check_unique_ids,
    find_hm,
    find_listener,
    find_member,
    find_pool,
    http_defaults,
    pool_listeners,
)
from xdsr.apiserver.errors import ApiError, bad_request, conflict, not_found
from xdsr.model.loadbalancer import HealthMonitor, Listener, LoadBalancer, Member, Pool
from xdsr.store.docs import dump

# etcd refuses requests over 1.5 MiB (--max-request-bytes); the JSON gateway
# carries the value base64-encoded (4/3 larger). Refuse well before that.
MAX_DOC_BYTES = 1_000_000

# What each update may change: the update schema's attributes that the stored
# object holds (attributes.py). A listener's default pool is a relation, checked
# on its own below.
LB_UPDATE = Update(s.LoadBalancerUpdate, LoadBalancer)
LISTENER_UPDATE = Update(s.ListenerUpdate, Listener, exclude=("default_pool_id",))
POOL_UPDATE = Update(s.PoolUpdate, Pool)
MEMBER_UPDATE = Update(s.MemberUpdate, Member)
HM_UPDATE = Update(s.HealthMonitorUpdate, HealthMonitor)
# Octavia's batch update matches members by address and port; a matched member
# takes the request's other attributes but keeps its id and project.
MEMBER_KEY = ("address", "protocol_port")
MEMBER_BATCH_UPDATE = Update(s.MemberCreate, Member, exclude=("id", "project_id", *MEMBER_KEY))


def now() -> str:
    # Octavia's format (no fraction, no zone, UTC): gophercloud parses exactly this.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def new_id(chosen: uuid.UUID | None = None) -> str:
    """The client's id if it chose one (xdsr extension), else a new UUID."""
    return str(chosen) if chosen is not None else str(uuid.uuid4())


def requested_ids(body: BaseModel, kind: str, where: str) -> list[tuple[str, str, str]]:
    """(kind, id, field) of every id the client chose in a create body,
    nested objects included (a fully populated create, inline pools)."""
    # Only the fields the model has: asking a pydantic model for one it has
    # not raises internally, which for hundreds of members costs milliseconds.
    fields = type(body).model_fields
    out: list[tuple[str, str, str]] = []
    chosen = body.id if "id" in fields else None  # type: ignore[attr-defined]
    if chosen is not None:
        out.append((kind, str(chosen), f"{where}.id"))
    for attr, sub in (("listeners", "listener"), ("pools", "pool"), ("members", "member")):
        if attr in fields:
            for i, child in enumerate(getattr(body, attr) or []):
                out += requested_ids(child, sub, f"{where}.{attr}[{i}]")
    for attr, sub in (("default_pool", "pool"), ("healthmonitor", "healthmonitor")):
        if attr in fields:
            child = getattr(body, attr)
            if isinstance(child, BaseModel):
                out += requested_ids(child, sub, f"{where}.{attr}")
    return out


def _s(value: object) -> str | None:
    return None if value is None else str(value)


# --- one edit of a document ------------------------------------------------------


class Edit:
    """A copy of the current document to change, and what the change touched."""

    def __init__(self, current: LoadBalancer, stamp: str) -> None:
        self.current = current
        self.doc = current.model_copy(deep=True)
        self.now = stamp
        self.created: list[Any] = []  # objects new in this change
        self.updated: list[Any] = []  # objects whose attributes changed
        self.placed: list[tuple[Member, str]] = []  # members created or changed, and where in the request
        self.pending: str = "UPDATE"

    def finish(self) -> LoadBalancer:
        doc = self.doc
        doc.generation = self.current.generation + 1
        doc.pending = self.pending  # type: ignore[assignment]
        for obj in self.created:
            obj.generation = doc.generation
        for obj in self.updated:
            obj.generation = doc.generation
            obj.updated_at = self.now
        if self.created:
            check_unique_ids(doc)
        return doc


def encode(doc: LoadBalancer) -> bytes:
    """The document as written to the store; 413 if it is larger than the store takes."""
    data = dump(doc)
    if len(data) > MAX_DOC_BYTES:
        raise ApiError(
            413,
            f"the load balancer's document would be {len(data)} bytes, more than the {MAX_DOC_BYTES} the store "
            "accepts in one write; nothing was changed",
        )
    return data


def set_fields(obj: BaseModel, body: BaseModel, where: str, update: Update) -> bool:
    """Copy the attributes the request set onto obj; True if any value changed.

    null clears a nullable attribute, empties name/description/tags (as in
    Octavia), and is refused for anything else."""
    changed = False
    for name in update.names:
        if name not in body.model_fields_set:
            continue
        value = getattr(body, name)
        if value is None:
            if name in ("name", "description"):
                value = ""
            elif name == "tags":
                value = []
            elif name not in update.nullable:
                raise bad_request(f"{where}.{name}", "may not be null")
        elif isinstance(value, uuid.UUID):
            value = str(value)
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


# --- builders (outside the CAS loop: ids and times chosen once) --------------------------


def build_member(body: s.MemberInline, project_id: str, stamp: str) -> Member:
    return create(Member, body, id=new_id(body.id), project_id=project_id, created_at=stamp)


def build_hm(body: s.HealthMonitorInline, pool_id: str, project_id: str, stamp: str) -> HealthMonitor:
    hm = create(HealthMonitor, body, id=new_id(body.id), project_id=project_id, created_at=stamp, pool_id=pool_id)
    http_defaults(hm)
    return hm


def build_pool(body: s.PoolInline, project_id: str, stamp: str) -> tuple[Pool, HealthMonitor | None]:
    pool = create(
        Pool,
        body,
        id=new_id(body.id),
        project_id=project_id,
        created_at=stamp,
        members=[build_member(m, project_id, stamp) for m in body.members or []],
    )
    hm = build_hm(body.healthmonitor, pool.id, project_id, stamp) if body.healthmonitor else None
    if hm is not None:
        pool.healthmonitor_id = hm.id
    return pool, hm


def build_listener(body: s.ListenerInline, project_id: str, stamp: str) -> Listener:
    return create(Listener, body, id=new_id(body.id), project_id=project_id, created_at=stamp)


# --- inserting new objects (inside the CAS loop) ------------------------------------------


def insert_pool(doc: LoadBalancer, pool: Pool, hm: HealthMonitor | None, where: str) -> None:
    check_members(doc, pool, [(m, f"{where}.members[{j}]") for j, m in enumerate(pool.members)])
    if hm is not None:
        check_hm(pool, hm, f"{where}.healthmonitor")
        doc.healthmonitors.append(hm)
    doc.pools.append(pool)


def insert_listener(doc: LoadBalancer, li: Listener, where: str) -> None:
    check_port_free(doc, li, where)
    if li.default_pool_id is not None:
        pool = find_pool(doc, li.default_pool_id)
        if pool is None:
            raise not_found("pool", li.default_pool_id, f"{where}.default_pool_id")
        check_attach(doc, li, pool, f"{where}.default_pool_id")
    doc.listeners.append(li)


def build_loadbalancer(body: s.LoadBalancerCreate, project_id: str, stamp: str) -> LoadBalancer:
    """A new load balancer, with the listeners and pools of a fully populated
    create (Octavia's single-call create: a listener's default_pool is given
    inline and must be named; pool names are unique)."""
    where = "loadbalancer"
    lb = create(LoadBalancer, body, id=new_id(body.id), project_id=project_id, created_at=stamp, pending="CREATE")
    by_name: dict[str, str] = {}
    for pwhere, spec in _inline_pools(body):
        pool, hm = build_pool(spec, project_id, stamp)
        if spec.name:
            if spec.name in by_name:
                raise bad_request(f"{pwhere}.name", f"pool name {spec.name!r} is used twice in this load balancer")
            by_name[spec.name] = pool.id
        insert_pool(lb, pool, hm, pwhere)
    for i, spec_li in enumerate(body.listeners or []):
        li = build_listener(spec_li, project_id, stamp)
        if spec_li.default_pool is not None:
            if spec_li.default_pool_id is not None:
                raise bad_request(
                    f"{where}.listeners[{i}].default_pool_id", "give default_pool_id or default_pool, not both"
                )
            li.default_pool_id = by_name[spec_li.default_pool.name or ""]
        insert_listener(lb, li, f"{where}.listeners[{i}]")
    check_unique_ids(lb)
    return lb


def _inline_pools(body: s.LoadBalancerCreate) -> list[tuple[str, s.PoolInline]]:
    """The pools of a fully populated create, with where each is in it, in
    the order the document holds them."""
    where = "loadbalancer"
    pools: list[tuple[str, s.PoolInline]] = [(f"{where}.pools[{i}]", p) for i, p in enumerate(body.pools or [])]
    for i, li in enumerate(body.listeners or []):
        if li.default_pool is not None:
            if not li.default_pool.name:
                raise bad_request(
                    f"{where}.listeners[{i}].default_pool.name",
                    "pools must be named when creating a fully populated load balancer",
                )
            pools.append((f"{where}.listeners[{i}].default_pool", li.default_pool))
    return pools


def placed_members(body: s.LoadBalancerCreate, lb: LoadBalancer) -> list[tuple[Member, str]]:
    """The members of build_loadbalancer(body), with where each is in the request."""
    return [
        (m, f"{pwhere}.members[{j}]")
        for (pwhere, _), pool in zip(_inline_pools(body), lb.pools, strict=True)
        for j, m in enumerate(pool.members)
    ]


# --- updates and deletes (inside the CAS loop) ---------------------------------------------


def update_loadbalancer(edit: Edit, body: s.LoadBalancerUpdate) -> None:
    if set_fields(edit.doc, body, "loadbalancer", LB_UPDATE):
        edit.updated.append(edit.doc)


def delete_loadbalancer(edit: Edit, cascade: bool) -> None:
    doc = edit.doc
    if not cascade and (doc.listeners or doc.pools):
        raise conflict(
            None,
            f"load balancer {doc.id} still has listeners or pools: delete them first, or use cascade=true",
        )
    doc.deleting = True
    edit.pending = "DELETE"


def create_listener(edit: Edit, li: Listener, inline: tuple[Pool, HealthMonitor | None] | None = None) -> Listener:
    if inline is not None:
        pool, hm = inline
        insert_pool(edit.doc, pool, hm, "listener.default_pool")
        edit.created.extend([pool, *pool.members, *([hm] if hm else [])])
        li.default_pool_id = pool.id
    insert_listener(edit.doc, li, "listener")
    edit.created.append(li)
    return li


def update_listener(edit: Edit, listener_id: str, body: s.ListenerUpdate) -> Listener:
    li = find_listener(edit.doc, listener_id)
    if li is None:
        raise not_found("listener", listener_id)
    changed = set_fields(li, body, "listener", LISTENER_UPDATE)
    if "default_pool_id" in body.model_fields_set:
        pool_id = _s(body.default_pool_id)
        if pool_id is not None and pool_id != li.default_pool_id:
            pool = find_pool(edit.doc, pool_id)
            if pool is None:
                raise not_found("pool", pool_id, "listener.default_pool_id")
            check_attach(edit.doc, li, pool, "listener.default_pool_id")
        if pool_id != li.default_pool_id:
            li.default_pool_id = pool_id
            changed = True
    if changed:
        edit.updated.append(li)
    return li


def delete_listener(edit: Edit, listener_id: str) -> None:
    li = find_listener(edit.doc, listener_id)
    if li is None:
        raise not_found("listener", listener_id)
    # Its default pool stays, as in Octavia.
    edit.doc.listeners.remove(li)


def create_pool(edit: Edit, pool: Pool, hm: HealthMonitor | None, listener_id: str | None) -> Pool:
    doc = edit.doc
    if listener_id is not None:
        li = find_listener(doc, listener_id)
        if li is None:
            raise not_found("listener", listener_id, "pool.listener_id")
        if li.default_pool_id is not None:
            raise conflict("pool.listener_id", f"listener {li.id} already has default pool {li.default_pool_id}")
        check_attach(doc, li, pool, "pool.listener_id")
        li.default_pool_id = pool.id
        edit.updated.append(li)
    insert_pool(doc, pool, hm, "pool")
    edit.created.extend([pool, *pool.members])
    edit.placed.extend((m, f"pool.members[{j}]") for j, m in enumerate(pool.members))
    if hm is not None:
        edit.created.append(hm)
    return pool


def update_pool(edit: Edit, pool_id: str, body: s.PoolUpdate) -> Pool:
    pool = find_pool(edit.doc, pool_id)
    if pool is None:
        raise not_found("pool", pool_id)
    if set_fields(pool, body, "pool", POOL_UPDATE):
        edit.updated.append(pool)
    return pool


def delete_pool(edit: Edit, pool_id: str) -> None:
    doc = edit.doc
    pool = find_pool(doc, pool_id)
    if pool is None:
        raise not_found("pool", pool_id)
    # Octavia deletes a listener's default pool too (Terraform destroys pools
    # before listeners): the listener is left without one and changes with it.
    for li in pool_listeners(doc, pool_id):
        li.default_pool_id = None
        edit.updated.append(li)
    # Its members and health monitor go with it, as in Octavia.
    doc.pools.remove(pool)
    doc.healthmonitors = [h for h in doc.healthmonitors if h.pool_id != pool_id]


def _pool(edit: Edit, pool_id: str) -> Pool:
    pool = find_pool(edit.doc, pool_id)
    if pool is None:
        raise not_found("pool", pool_id)
    return pool


def create_member(edit: Edit, pool_id: str, m: Member) -> Member:
    pool = _pool(edit, pool_id)
    check_member(edit.doc, pool, m, "member")
    pool.members.append(m)
    edit.created.append(m)
    edit.placed.append((m, "member"))
    return m


def update_member(edit: Edit, pool_id: str, member_id: str, body: s.MemberUpdate) -> Member:
    pool = _pool(edit, pool_id)
    m = find_member(pool, member_id)
    if m is None:
        raise not_found("member", member_id)
    if set_fields(m, body, "member", MEMBER_UPDATE):
        edit.updated.append(m)
        edit.placed.append((m, "member"))
    return m


def delete_member(edit: Edit, pool_id: str, member_id: str) -> None:
    pool = _pool(edit, pool_id)
    m = find_member(pool, member_id)
    if m is None:
        raise not_found("member", member_id)
    pool.members.remove(m)


def _key(m: Member) -> tuple[Any, ...]:
    return tuple(getattr(m, name) for name in MEMBER_KEY)


def replace_members(edit: Edit, pool_id: str, wanted: list[tuple[s.MemberCreate, Member]], additive: bool) -> None:
    """Octavia's batch update: the request lists the pool's members; members
    are matched by (address, protocol_port), matched ones take the request's
    attributes, new ones are created and (unless additive_only) the rest go."""
    pool = _pool(edit, pool_id)
    existing = {_key(m): m for m in pool.members}
    seen: dict[tuple[Any, ...], int] = {}
    result: list[Member] = []
    for i, (body, built) in enumerate(wanted):
        where = f"members[{i}]"
        key = _key(built)
        if key in seen:
            raise bad_request(where, f"{built.address} port {built.protocol_port} is also members[{seen[key]}]")
        seen[key] = i
        old = existing.pop(key, None)
        if old is None:
            check_member(edit.doc, pool.model_copy(update={"members": []}), built, where)
            result.append(built)
            edit.created.append(built)
            edit.placed.append((built, where))
        else:
            if set_fields(old, body, where, MEMBER_BATCH_UPDATE):
                edit.updated.append(old)
                edit.placed.append((old, where))
            result.append(old)
    if additive:
        result.extend(existing.values())
    pool.members = result


def create_hm(edit: Edit, hm: HealthMonitor) -> HealthMonitor:
    pool = find_pool(edit.doc, hm.pool_id)
    if pool is None:
        raise not_found("pool", hm.pool_id, "healthmonitor.pool_id")
    if pool.healthmonitor_id is not None:
        raise conflict("healthmonitor.pool_id", f"pool {pool.id} already has health monitor {pool.healthmonitor_id}")
    check_hm(pool, hm, "healthmonitor")
    pool.healthmonitor_id = hm.id
    edit.doc.healthmonitors.append(hm)
    edit.created.append(hm)
    return hm


def update_hm(edit: Edit, hm_id: str, body: s.HealthMonitorUpdate) -> HealthMonitor:
    hm = find_hm(edit.doc, hm_id)
    if hm is None:
        raise not_found("health monitor", hm_id)
    changed = set_fields(hm, body, "healthmonitor", HM_UPDATE)
    http_defaults(hm)
    pool = find_pool(edit.doc, hm.pool_id)
    if pool is not None:
        check_hm(pool, hm, "healthmonitor")
    if changed:
        edit.updated.append(hm)
    return hm


def delete_hm(edit: Edit, hm_id: str) -> None:
    hm = find_hm(edit.doc, hm_id)
    if hm is None:
        raise not_found("health monitor", hm_id)
    edit.doc.healthmonitors.remove(hm)
    pool = find_pool(edit.doc, hm.pool_id)
    if pool is not None:
        pool.healthmonitor_id = None
