"""Who is calling: tokens bound to projects.

The API speaks Keystone's header (`X-Auth-Token`) so that OpenStack clients
work unchanged, but the tokens are static, read from a YAML file:

    tokens:
      - {token: s3cret, project_id: 7a1c..., admin: false}
      - {token: 0p3rator, project_id: admin, admin: true}

A token is compared with every known token in constant time: the given token
and each known one are hashed first, so neither a matching prefix nor the
length of a known token shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Token(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Annotated[str, Field(min_length=8)]
    project_id: Annotated[str, Field(min_length=1, max_length=36)]
    admin: bool = False


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[Token]


class TokensError(ValueError):
    """The tokens file is unreadable or invalid; the message names the field."""


def load_tokens(path: str | Path) -> list[Token]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TokensError(f"{path}: {exc}") from None
    try:
        parsed = TokensFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
            lines.append(f"{loc or 'tokens'}: {err['msg']}")
        raise TokensError(f"{path}: " + "; ".join(lines)) from None
    seen: set[str] = set()
    for i, t in enumerate(parsed.tokens):
        if t.token in seen:
            raise TokensError(f"{path}: tokens[{i}].token: duplicate token")
        seen.add(t.token)
    return parsed.tokens


UNAUTHENTICATED = "authentication required: send a known token in the X-Auth-Token header"


@dataclass(frozen=True)
class Caller:
    """The project a request acts for."""

    project_id: str
    admin: bool

    def sees(self, project_id: str) -> bool:
        return self.admin or project_id == self.project_id


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRegistry:
    def __init__(self, tokens: Iterable[Token]) -> None:
        self._entries = [(_digest(t.token), Caller(t.project_id, t.admin)) for t in tokens]

    def authenticate(self, token: str | None) -> Caller | None:
        if not token:
            return None
        given = _digest(token)
        found: Caller | None = None
        # No early exit: every request does the same work whichever token matches.
        for digest, caller in self._entries:
            if hmac.compare_digest(given, digest):
                found = caller
        return found
