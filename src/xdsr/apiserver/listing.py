"""List queries as Octavia answers them: filters, fields, sort and pages.

- Any top-level attribute with a scalar value filters by exact match
  (`?name=web&provisioning_status=ACTIVE`); a repeated parameter matches any
  of its values; an unknown one is a 400 naming it, as in Octavia. Which
  attributes those are follows from the response schema (`filters`).
- `tags`, `tags-any`, `not-tags`, `not-tags-any` (comma-separated or repeated).
- `fields=a,b` (or repeated) trims every object to those attributes.
- `sort=key[:asc|desc],...` or `sort_key`/`sort_dir`; the default order is
  Octavia's: created_at, then id, descending.
- `limit` (at most 1000 per page, Octavia's default maximum), `marker` (the id
  of the last object of the previous page), `page_reverse`; a full page gets a
  `next` link, a page after a marker a `previous` link.
"""

from __future__ import annotations

import functools
import ipaddress
import types
import typing
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from starlette.datastructures import URL, QueryParams

from xdsr.api.responses import FilterAs
from xdsr.apiserver.errors import bad_request
from xdsr.model.checks import IPAddress

Obj = dict[str, Any]

PAGE_MAX = 1000
PAGING = ("limit", "marker", "sort", "sort_key", "sort_dir", "page_reverse", "fields")
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


def filters(out: type[BaseModel]) -> dict[str, Any]:
    """The attributes a list filters and sorts on, and how a query's value is
    read (str, int, bool or IPAddress): every attribute of the response schema
    that holds one value. Lists, objects and the always-null attributes
    Octavia does not filter on are left out."""
    found = {}
    for name, field in out.model_fields.items():
        kind = next((m.type for m in field.metadata if isinstance(m, FilterAs)), None) or _kind(field.annotation)
        if kind is not None:
            found[name] = kind
    return found


def _kind(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return next((m.type for m in meta if isinstance(m, FilterAs)), None) or _kind(base)
    if origin is typing.Union or origin is types.UnionType:
        kinds = {_kind(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is typing.Literal:
        return str if all(isinstance(v, str) for v in typing.get_args(annotation)) else None
    return annotation if annotation in (str, int, bool) else None


def parse_bool(field: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise bad_request(field, f"{value!r} is not a boolean (true or false)")


def _matcher(field: str, sample: Any, values: list[str]) -> Callable[[Any], bool]:
    """How an attribute of this type compares with the query's strings."""
    if sample is bool:
        wanted_b = {parse_bool(field, v) for v in values}
        return lambda x: x in wanted_b
    if sample is int:
        try:
            wanted_i = {int(v) for v in values}
        except ValueError:
            raise bad_request(field, f"{values[0]!r} is not an integer") from None
        return lambda x: x in wanted_i
    if sample is IPAddress:
        wanted_ip: set[Any] = set()
        for v in values:
            try:
                wanted_ip.add(ipaddress.ip_address(v))
            except ValueError:
                raise bad_request(field, f"{v!r} is not an IP address") from None
        return lambda x: x is not None and ipaddress.ip_address(x) in wanted_ip
    # An empty value matches an unset (null or empty) attribute.
    wanted = set(values)
    return lambda x: (x if x is not None else "") in wanted


def _split(params: QueryParams, name: str) -> list[str]:
    return [part for value in params.getlist(name) for part in value.split(",") if part]


class ListQuery:
    """One request's filters, order, page and fields, checked against the
    attributes of the objects it lists (`filters`: attribute → its kind, see filters())."""

    def __init__(self, params: QueryParams, filters: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        self.params = params
        self.filters = filters
        # extra: query names that filter on something else than an attribute
        # (loadbalancer_id on listeners, …), mapped to a key the caller adds.
        self.extra = extra or {}
        self.matchers: list[tuple[str, Callable[[Any], bool]]] = []
        for name in params:
            if name in PAGING or name in TAG_FILTERS:
                continue
            values = params.getlist(name)
            if name in self.extra:
                wanted = set(values)
                self.matchers.append((self.extra[name], lambda x, w=wanted: x in w))
            elif name in filters:
                self.matchers.append((name, _matcher(name, filters[name], values)))
            else:
                raise bad_request(name, "is not a filter of this list (unknown attribute)")
        self.tags = {t: set(_split(params, t)) for t in TAG_FILTERS if t in params}
        self.fields = _split(params, "fields")
        self.sort_keys = self._sort_keys()
        self.limit = self._limit()
        self.marker = params.get("marker")
        self.reverse = parse_bool("page_reverse", params["page_reverse"]) if "page_reverse" in params else False

    def _sort_keys(self) -> list[tuple[str, bool]]:
        """[(attribute, descending)], always ending with id so the order is total."""
        keys: list[tuple[str, bool]] = []
        p = self.params
        if p.get("sort"):
            for part in p["sort"].split(","):
                name, _, direction = part.partition(":")
                keys.append((name.strip(), self._desc(direction or "desc")))
        elif p.get("sort_key"):
            names = p["sort_key"].split(",")
            dirs = p.get("sort_dir", "").split(",") if p.get("sort_dir") else []
            for i, name in enumerate(names):
                keys.append((name.strip(), self._desc(dirs[i] if i < len(dirs) else "desc")))
        for name, _ in keys:
            if name not in self.filters:
                raise bad_request("sort", f"{name!r} is not a sortable attribute")
        present = {k for k, _ in keys}
        for default in ("created_at", "id"):
            if default not in present:
                keys.append((default, True))
        return keys

    @staticmethod
    def _desc(direction: str) -> bool:
        d = direction.strip().lower()
        if d not in ("asc", "desc"):
            raise bad_request("sort_dir", f"{direction!r} is not a direction (asc or desc)")
        return d == "desc"

    def _limit(self) -> int:
        raw = self.params.get("limit")
        if raw is None or raw == "infinite":
            return PAGE_MAX
        try:
            n = int(raw)
        except ValueError:
            raise bad_request("limit", f"{raw!r} is not an integer") from None
        return PAGE_MAX if n < 1 else min(n, PAGE_MAX)

    # --- applying ---

    def _keep(self, obj: Obj) -> bool:
        for name, match in self.matchers:
            if not match(obj.get(name)):
                return False
        tags = set(obj.get("tags") or [])
        if "tags" in self.tags and not self.tags["tags"] <= tags:
            return False
        if "tags-any" in self.tags and not self.tags["tags-any"] & tags:
            return False
        if "not-tags" in self.tags and self.tags["not-tags"] and self.tags["not-tags"] <= tags:
            return False
        return not ("not-tags-any" in self.tags and self.tags["not-tags-any"] & tags)

    def _compare(self, a: Obj, b: Obj) -> int:
        for name, desc in self.sort_keys:
            x, y = a.get(name), b.get(name)
            # null sorts as the smallest value, as Octavia's '' and 0 do.
            kx = (x is not None, x if x is not None else 0)
            ky = (y is not None, y if y is not None else 0)
            if kx != ky:
                less = kx < ky
                return (1 if less else -1) if desc else (-1 if less else 1)
        return 0

    def apply(self, objects: list[Obj], url: URL, key: str) -> Obj:
        """The list response, {key: [...], key_links: [...]}, from every
        object of this kind the caller may see."""
        kept = sorted((o for o in objects if self._keep(o)), key=functools.cmp_to_key(self._compare))
        first, last = 0, len(kept)
        if self.marker is not None:
            marker = next((o for o in objects if o["id"] == self.marker), None)
            if marker is None:
                raise bad_request("marker", f"{self.marker!r} is not an object of this list")
            if self.reverse:
                last = sum(1 for o in kept if self._compare(o, marker) < 0)
                first = max(0, last - self.limit)
            else:
                first = sum(1 for o in kept if self._compare(o, marker) <= 0)
                last = min(len(kept), first + self.limit)
        else:
            last = min(len(kept), self.limit)
        page = kept[first:last]
        links = self._links(page, url, has_prev=first > 0, has_next=last < len(kept))
        for name in self.extra.values():
            for o in page:
                o.pop(name, None)
        if self.fields:
            page = [{k: v for k, v in o.items() if k in self.fields} for o in page]
        return {key: page, f"{key}_links": links}

    def _links(self, page: list[Obj], url: URL, has_prev: bool, has_next: bool) -> list[dict[str, str]]:
        if not page:
            return []
        base = [(k, v) for k, v in self.params.multi_items() if k not in ("marker", "page_reverse", "limit")]
        base.append(("limit", str(self.limit)))
        href = str(url.replace(query=""))
        links = []
        if has_prev:
            prev = [*base, ("marker", page[0]["id"]), ("page_reverse", "True")]
            links.append({"href": f"{href}?{urlencode(prev)}", "rel": "previous"})
        if has_next:
            nxt = [*base, ("marker", page[-1]["id"])]
            links.append({"href": f"{href}?{urlencode(nxt)}", "rel": "next"})
        return links
