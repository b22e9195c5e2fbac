"""``/openapi.json`` and ``/docs``: the document as built at start-up, and a page listing its operations."""

from __future__ import annotations

from typing import Any

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("kubernaut.openapi", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _schema_text(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rpartition("/")[2]
    return orjson.dumps(schema).decode()


def render_docs(spec: dict[str, Any]) -> str:
    operations = [
        {"method": method.upper(), "path": path, **op}
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    ]
    return _TEMPLATES.get_template("docs.html").render(
        info=spec["info"],
        operations=operations,
        schemas=spec["components"]["schemas"],
        schema_text=_schema_text,
        dumps=lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(),
    )


def docs_routes(spec: dict[str, Any]) -> list[Route]:
    body = orjson.dumps(spec)
    page = render_docs(spec)

    async def openapi_json(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def docs(_request: Request) -> Response:
        return HTMLResponse(page)

    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
