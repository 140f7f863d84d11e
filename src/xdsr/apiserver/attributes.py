"""Which attributes move between the vocabulary's schemas (xdsr.api) and the
stored documents (xdsr.model.loadbalancer), derived from the models.

An attribute is written once in the stored model and once in each schema
that carries it; what the API server copies follows from the names they
share, so that adding an attribute to both needs no list edited here or in
the routes:

- a create copies every attribute of the request that the stored object
  has; null (or absent) leaves the stored default;
- an update may change every attribute of the update schema that the stored
  object has, and may set to null those the stored object allows to be null;
- a response shows every attribute of its schema: from the stored object if
  it has it, else the neutral value the schema declares, else the value the
  renderer gives (statuses, relations).

Attributes xdsr refuses (xdsr.api.fields.Refused) hold only a neutral value
and are never copied. Children (a pool's members, a load balancer's
listeners and pools) are objects of their own, built by their own builders.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from xdsr.api.fields import is_refused
from xdsr.model.checks import StoredAddress

M = TypeVar("M", bound=BaseModel)


def _admits(annotation: Any) -> list[Any]:
    """The types an annotation admits: Annotated unwrapped, unions flattened, NoneType for null."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _admits(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for a in typing.get_args(annotation) for t in _admits(a)]
    return [type(None) if annotation is None else annotation]


def allows_null(annotation: Any) -> bool:
    return type(None) in _admits(annotation)


def _is_children(annotation: Any) -> bool:
    """A list of stored objects: children, not an attribute."""
    if typing.get_origin(annotation) is not list:
        return False
    (item,) = typing.get_args(annotation)
    return isinstance(item, type) and issubclass(item, BaseModel)


@functools.cache
def shared(request: type[BaseModel], stored: type[BaseModel]) -> tuple[str, ...]:
    """The attributes of `request` that `stored` holds, refused ones and children excepted."""
    return tuple(
        name
        for name, field in request.model_fields.items()
        if name in stored.model_fields
        and not is_refused(field)
        and not _is_children(stored.model_fields[name].annotation)
    )


def create(stored: type[M], body: BaseModel, **given: Any) -> M:
    """A stored object from a create request: its attributes copied from
    `body` (null keeps the stored default), and what the caller `given`
    (ids, project, times, children).

    Put together without validating again (model_construct): the request
    schema has checked every value it copies, with bounds at least as
    tight as the stored model's, and the caller gives values of its own
    making. Validating again parsed every address a second time, a third
    of what a create of ten members cost."""
    values: dict[str, Any] = {}
    for name in shared(type(body), stored):
        if name in given:
            continue
        value = getattr(body, name)
        if value is not None:
            values[name] = str(value) if isinstance(value, UUID) else value
    return stored.model_construct(**values, **given)


class Update:
    """What an update request may change on a stored object."""

    def __init__(self, request: type[BaseModel], stored: type[BaseModel], exclude: Iterable[str] = ()) -> None:
        skip = set(exclude)
        self.names = tuple(n for n in shared(request, stored) if n not in skip)
        self.nullable = tuple(n for n in self.names if allows_null(stored.model_fields[n].annotation))


# --- rendering ---------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A stored value as JSON shows it."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    raise TypeError(f"no JSON form for {type(value).__name__}")


def _is_address(field: FieldInfo) -> bool:
    """A stored address (checks.StoredAddress), null allowed or not."""
    if StoredAddress in typing.get_args(field.annotation):
        return True
    return field.annotation is Any and field.metadata == list(typing.get_args(StoredAddress)[1:])


def _converter(field: FieldInfo) -> Any:
    """How a stored attribute is shown: None if as it is."""
    if _is_address(field):
        return _text
    bases = [t for t in _admits(field.annotation) if t is not type(None)]
    if all(typing.get_origin(b) is typing.Literal or b in (str, int, bool, float) for b in bases):
        return None
    if all(typing.get_origin(b) is list for b in bases):
        return list if all(typing.get_args(b)[0] in (str, int) for b in bases) else plain
    return plain


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class Rendering:
    """How a stored object becomes a response object: every attribute of the
    response schema, in its order. The renderer gives the `given` ones.

    Rendering runs for every object of every list, so the plan is made once:
    attributes stored as JSON scalars are fetched in one attrgetter call,
    the few others (addresses, segments, tags) converted one by one."""

    def __init__(self, stored: type[BaseModel], out: type[BaseModel], given: Iterable[str] = ()) -> None:
        self.given = frozenset(given)
        unknown = self.given - set(out.model_fields)
        if unknown:
            raise TypeError(f"{out.__name__} has no attribute {', '.join(sorted(unknown))}")
        self.template: dict[str, Any] = {}  # every attribute in order, neutral values filled in
        self.fresh: list[tuple[str, type]] = []  # neutral [] and {}: a new one per response
        scalars: list[str] = []
        self.converted: list[tuple[str, Any, Any]] = []  # (attribute, converter, value shown for a stored null)
        for name, field in out.model_fields.items():
            self.template[name] = None
            if name in self.given:
                continue
            if name in stored.model_fields:
                # A stored null where the response has a non-null neutral value shows that value.
                neutral = None if field.is_required() or allows_null(field.annotation) else field.default
                convert = _converter(stored.model_fields[name])
                if neutral is None and convert is None:
                    scalars.append(name)
                else:
                    self.converted.append((name, convert or plain, neutral))
            elif not field.is_required():
                self.template[name] = field.default
                if isinstance(field.default, list | dict):
                    self.fresh.append((name, type(field.default)))
            else:
                raise TypeError(
                    f"{out.__name__}.{name}: not stored in {stored.__name__}, without a neutral value, "
                    "and not given by the renderer"
                )
        self.scalars = tuple(scalars)
        self._get = operator.attrgetter(*scalars) if len(scalars) > 1 else None

    def __call__(self, obj: BaseModel, **given: Any) -> dict[str, Any]:
        if given.keys() != self.given:
            raise TypeError(f"the renderer must give {', '.join(sorted(self.given))}")
        out = self.template.copy()
        if self._get is not None:
            out.update(zip(self.scalars, self._get(obj), strict=True))
        elif self.scalars:
            out[self.scalars[0]] = getattr(obj, self.scalars[0])
        for name, convert, neutral in self.converted:
            value = getattr(obj, name)
            out[name] = neutral if value is None else convert(value)
        for name, kind in self.fresh:
            out[name] = kind()
        out.update(given)
        return out
