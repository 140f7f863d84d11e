"""pydantic's validation errors as the one line a user reads: the offending
field first, then why (`loadbalancer.listeners[0].protocol: HTTP is not
supported: ...`).

The API server answers an invalid request with this text in a 400; the
Octavia provider driver refuses the same object with the same text (Octavia
shows it in a 501), so a user reads one explanation whichever API they used.
"""

from __future__ import annotations

from typing import Any


def _loc(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in ("function-after", "function-before") or str(p).startswith(("function-", "lax-", "json-or-")):
            continue  # pydantic's internal validator names, not fields
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def _msg(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    # Our own refusals are raised as ValueError; pydantic prefixes them.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err.get("type") == "extra_forbidden":
        msg = "unknown attribute"
    elif err.get("type") == "missing":
        msg = "required attribute is missing"
    return msg


def validation_text(errors: list[dict[str, Any]], root: str | None = None) -> str:
    """The text of a 400 for these errors (pydantic's `errors()`). `root`:
    the name of the validated object when its locations lack it (a body
    validated on its own rather than inside its request wrapper)."""
    seen: list[str] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            # loc is the character position, not a field
            line = f"body: invalid JSON: {(err.get('ctx') or {}).get('error', 'cannot parse')}"
        else:
            loc = tuple(err.get("loc", ()))
            line = f"{_loc((root, *loc) if root else loc)}: {_msg(err)}"
        if line not in seen:
            seen.append(line)
    return "; ".join(seen[:10])
