"""``/ui``: the token once (login form, or ``?token=`` answered with a redirect that drops it), then an
HttpOnly SameSite=Strict cookie; the page never carries the token."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kubernaut.config import OperatorPageSettings
from kubernaut.contextapi.runtime import ContextApi
from kubernaut.contextapi.ui import data
from kubernaut.contextapi.ui.auth import COOKIE, token_valid
from kubernaut.problems import Problem, read_body

MAX_FORM_BYTES = 4096
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("kubernaut.contextapi.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _login(error: str | None, status: int) -> Response:
    html = _TEMPLATES.get_template("login.html").render(error=error)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _signed_in(token: str, query: list[tuple[str, str]]) -> Response:
    target = "/ui" + (f"?{urlencode(query)}" if query else "")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, path="/ui", httponly=True, samesite="strict")
    return response


async def _gateway_health(page: OperatorPageSettings) -> dict[str, Any]:
    """The gateway's /readyz and, with its token, its Redis group (``/api/v1/redis-group``)."""
    url = page.gateway_url
    if not url:
        return {"state": "unknown", "detail": "context_api.ui.gateway_url is not set"}
    token = page.gateway_token_file.read_text().strip() if page.gateway_token_file else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:
            ready = await client.get("/readyz")
            group = await client.get("/api/v1/redis-group", headers=headers) if headers else None
        health: dict[str, Any] = {
            "state": "ready" if ready.status_code == 200 else "not ready",
            **ready.json(),
        }
        if group is not None and group.status_code == 200:
            health["group"] = group.json()
    except (httpx.HTTPError, ValueError, OSError) as err:
        return {"state": "unreachable", "detail": type(err).__name__}
    return health


async def ui(request: Request) -> Response:
    query = request.query_params.multi_items()
    token = request.query_params.get("token")
    if token is not None:
        if not token_valid(request, token):
            return _login("That token is not accepted.", 401)
        return _signed_in(token, [(k, v) for k, v in query if k != "token"])
    if not token_valid(request, request.cookies.get(COOKIE)):
        return _login(None, 401)
    filters = data.UiFilters.parse(query)
    api: ContextApi = request.app.state.api
    async with api.pool.acquire() as conn:
        view = await data.load(conn, filters)
    l1 = api.cache.l1
    partial = request.headers.get("x-ui-refresh") == "1"  # the page's own refresh: the view alone
    html = _TEMPLATES.get_template("view.html" if partial else "page.html").render(
        view=view,
        gateway=await _gateway_health(request.app.state.ui),
        cache="disabled" if l1 is None else ("available" if l1.available else "unavailable"),
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def login(request: Request) -> Response:
    try:
        body = await read_body(request, MAX_FORM_BYTES, media_type=None)
    except Problem as refused:  # too large: the page says so, a problem+json body would not
        return _login("The form is too large.", refused.status)
    token = dict(parse_qsl(body.decode(errors="replace"))).get("token", "")
    if not token_valid(request, token):
        return _login("That token is not accepted.", 401)
    return _signed_in(token, [])


async def logout(_request: Request) -> Response:
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


UI_ROUTES = [
    Route("/ui", ui, methods=["GET"]),
    Route("/ui/login", login, methods=["POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
]
