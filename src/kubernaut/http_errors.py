"""RFC 7807 answers for what no endpoint handles, shared by both services' Starlette apps: unknown
paths (404, also with a trailing slash: no redirects), wrong methods (405 with ``Allow``), and an
unexpected error (500, after which the server logs the traceback)."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
_SLUGS = {404: "not-found", 405: "method-not-allowed"}


def _problem(
    status: int, slug: str, title: str, detail: str, request: Request, field: str | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "type": f"urn:kubernaut:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if field is not None:
        body["field"] = field
    return body


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    title = exc.detail if isinstance(exc.detail, str) else "Error"
    if status == 405:
        detail, field = f"{request.method} is not allowed on {request.url.path}", "method"
    else:
        detail, field = f"{request.method} {request.url.path}: {title}", "path"
    body = _problem(status, _SLUGS.get(status, "http-error"), title, detail, request, field)
    return Response(orjson.dumps(body), status, headers=exc.headers, media_type=PROBLEM_JSON)


async def internal_error(request: Request, _exc: Exception) -> Response:
    body = _problem(500, "internal", "Internal error", "unexpected error; see the service log", request)
    return Response(orjson.dumps(body), 500, media_type=PROBLEM_JSON)
