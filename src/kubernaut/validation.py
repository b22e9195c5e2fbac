"""pydantic ``ValidationError`` as (field path, message) pairs: one rendering for the services' 400
problems and the CLI's configuration errors."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

from pydantic import ValidationError

BODY = "(body)"  # the input as a whole (the request body), as opposed to one of its fields
UNNAMED = "(unnamed)"  # a key whose name is empty (``?=x``, ``{"": 1}``)


class FieldError(NamedTuple):
    field: str
    message: str
    reason: str | None = None  # a machine-readable cause, where the service has one


def field_path(loc: Sequence[int | str], whole: str = BODY, skip: Collection[str] = ()) -> str:
    """pydantic's ``('alerts', 3, 'labels')`` as ``alerts[3].labels``; ``skip`` drops pydantic's own
    location parts (discriminated-union tags), which are no field the user wrote."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in skip:
            name = part or UNNAMED
            out += f".{name}" if out else name
    return out or whole


def field_errors(
    err: ValidationError,
    *,
    whole: str = BODY,
    unknown: str = "unknown field",
    skip: Collection[str] = (),
) -> list[FieldError]:
    """Every error of ``err``, in pydantic's order; ``unknown`` is the message for a forbidden extra."""
    out = []
    for e in err.errors(include_url=False, include_input=False):
        if e["type"] == "json_invalid":
            ctx = e.get("ctx") or {}
            out.append(FieldError(whole, f"malformed JSON: {ctx.get('error', e['msg'])}"))
            continue
        message = unknown if e["type"] == "extra_forbidden" else e["msg"]
        out.append(FieldError(field_path(e["loc"], whole, skip), message))
    return out
