"""RFC 7807 ``application/problem+json``, one vocabulary for both services: the type is
``urn:kubernaut:problem:<kind>``, the title the status's reason phrase, ``field`` names the offending
input (``alerts[3].labels.alertname``, ``Content-Type``, ``(body)``) and ``errors`` lists every
(field, message) of a validation failure. Also the bounded body reader and the Starlette handlers for
what no endpoint answers (unknown path, wrong method, unexpected error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from kubernaut.validation import BODY, FieldError, field_errors

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:kubernaut:problem:"
TYPE_PATTERN = r"^urn:kubernaut:problem:[a-z]+(-[a-z]+)*$"
JSON = "application/json"


def title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    kind: str,
    detail: str,
    *,
    instance: str | None = None,
    field: str | None = None,
    errors: Sequence[FieldError] = (),
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    body: dict[str, object] = {
        "type": TYPE_BASE + kind,
        "title": title(status),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = [
            e._asdict() if e.reason else {"field": e.field, "message": e.message} for e in errors
        ]
    if extra:
        body.update(extra)
    return body


class Problem(Exception):
    """An error answer, raised where the refusal is decided and rendered by :meth:`response`."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.field = field
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, instance: str | None) -> dict[str, object]:
        return problem_body(
            self.status,
            self.kind,
            self.detail,
            instance=instance,
            field=self.field,
            errors=self.errors,
            extra=self.extra,
        )

    def encode(self, instance: str | None) -> bytes:
        return orjson.dumps(self.body(instance))

    def response(self, instance: str | None) -> Response:
        return Response(self.encode(instance), self.status, self.headers, media_type=PROBLEM_JSON)


def invalid(kind: str, errors: Sequence[FieldError]) -> Problem:
    """400 naming the first offending field; ``errors`` lists them all."""
    first = errors[0]
    return Problem(400, kind, f"{first.field}: {first.message}", field=first.field, errors=errors)


def from_validation_error(kind: str, err: ValidationError, **options: str) -> Problem:
    return invalid(kind, field_errors(err, **options))


def unavailable(what: str, retry_after_s: int) -> Problem:
    """503 with Retry-After: a backing store is away and nothing was taken."""
    return Problem(
        503,
        "unavailable",
        f"{what}; nothing was accepted, retry later",
        headers={"Retry-After": str(retry_after_s)},
    )


def too_large(limit: int) -> Problem:
    return Problem(413, "body-too-large", f"the body exceeds {limit} bytes", field=BODY)


async def read_body(request: Request, limit: int, media_type: str | None = JSON) -> bytes:
    """The request body, refused (415) unless it is ``media_type`` (None: any) and refused (413) as soon
    as it passes ``limit`` bytes, before more is read. ``ClientDisconnect`` passes through."""
    return await read_asgi_body(request.scope, request.receive, limit, media_type)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the (lower-case) header ``name`` in an ASGI HTTP scope."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_asgi_body(scope: Scope, receive: Receive, limit: int, media_type: str | None = JSON) -> bytes:
    """:func:`read_body` on the ASGI scope and receive channel (the gateway's webhook routes skip
    Starlette's request object)."""
    if media_type is not None:
        given = (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if given != media_type:
            raise Problem(
                415,
                "unsupported-media-type",
                f"Content-Type must be {media_type}, got {given or 'none'!r}",
                field="Content-Type",
            )
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# -- Starlette exception handlers ------------------------------------------------------------------

_KINDS = {404: "not-found", 405: "method-not-allowed"}


async def problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response(request.url.path)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals: unknown paths (also with a trailing slash: no redirects) and wrong
    methods (405 with ``Allow``)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 405:
        detail, field = f"{request.method} is not allowed on {request.url.path}", "method"
    else:
        detail, field = f"{request.method} {request.url.path}: {title(status)}", "path"
    problem = Problem(status, _KINDS.get(status, "http-error"), detail, field=field, headers=exc.headers)
    return problem.response(request.url.path)


def internal(detail: str = "unexpected error; see the service log") -> Problem:
    return Problem(500, "internal", detail)


async def internal_error(request: Request, _exc: Exception) -> Response:
    """After this answer the server logs the traceback."""
    return internal().response(request.url.path)
