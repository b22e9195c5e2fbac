"""RFC 7807 ``application/problem+json`` answers; every refusal names what was wrong."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson
from pydantic import ValidationError
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:kubernaut:gateway:problem:"


class Problem(Exception):
    """An HTTP error answer. ``field`` names the offending input (``alerts[3].labels.alertname``)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = dict(headers or {})

    def response(self, instance: str) -> Response:
        body: dict[str, object] = {
            "type": _TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = list(self.errors)
        return Response(orjson.dumps(body), self.status, self.headers, media_type=PROBLEM_JSON)


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic's ``('alerts', 3, 'labels')`` as ``alerts[3].labels``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def invalid(field: str, detail: str) -> Problem:
    return Problem(400, "invalid-signal", "Invalid signal", f"{field}: {detail}", field=field)


def refuse_nul(body: bytes, strings: Iterable[tuple[str, Mapping[str, str]]]) -> None:
    """PostgreSQL cannot store NUL in text or jsonb: refuse it here (400) rather than fail the write
    (503, retried forever). The byte scan keeps the common case cheap."""
    if b"\\u0000" not in body:
        return
    for field, mapping in strings:
        for key, value in mapping.items():
            if "\x00" in key or "\x00" in value:
                raise invalid(f"{field}.{key}" if field else key, "NUL characters are not allowed")


def from_validation_error(err: ValidationError) -> Problem:
    errors = []
    for e in err.errors(include_url=False, include_input=False):
        if e["type"] == "json_invalid":
            field, message = "(body)", f"malformed JSON: {e['ctx'].get('error', e['msg'])}"
        else:
            field, message = field_path(e["loc"]), e["msg"]
        errors.append({"field": field, "message": message})
    first = errors[0]
    return Problem(
        400,
        "invalid-signal",
        "Invalid signal",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=errors,
    )


def unavailable(what: str, retry_after_s: int) -> Problem:
    return Problem(
        503,
        "unavailable",
        "Service unavailable",
        f"{what}; nothing was accepted, retry later",
        headers={"Retry-After": str(retry_after_s)},
    )
