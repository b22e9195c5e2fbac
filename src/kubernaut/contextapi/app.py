"""The Context-API ASGI app (``create_app``) and its server (``serve``, run by ``kubernaut context-api``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubernaut.config import Settings
from kubernaut.contextapi import openapi, queries, routes
from kubernaut.contextapi.metrics import ContextApiMetrics
from kubernaut.contextapi.params import ParamError
from kubernaut.contextapi.problems import problem
from kubernaut.contextapi.runtime import ContextApi
from kubernaut.contextapi.ui import UI_ROUTES
from kubernaut.openapi import docs_routes


class _RequestMetrics:
    """Counts and times every request under its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ContextApiMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self._metrics
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            metrics.requests.labels(name, str(status)).inc()
            metrics.request_duration.labels(name).observe(time.perf_counter() - start)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(
        exc.status_code,
        "http-error",
        exc.detail if isinstance(exc.detail, str) else "error",
        f"{request.method} {request.url.path}: {exc.detail}",
        instance=request.url.path,
    )


def create_app(settings: Settings) -> Starlette:
    """One replica: its own L2, metrics registry, pools; opened and closed by the ASGI lifespan."""
    metrics = ContextApiMetrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api = await ContextApi.open(settings, metrics)
        app.state.api = api
        try:
            yield
        finally:
            await api.close()

    app = Starlette(
        routes=[*routes.ROUTES, *docs_routes(openapi.spec()), *UI_ROUTES],
        lifespan=lifespan,
        exception_handlers={
            ParamError: routes.param_error,
            HTTPException: _http_error,
            **dict.fromkeys(queries.STORE_ERRORS, routes.store_error),
        },
    )
    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


def serve(settings: Settings) -> None:
    http = settings.context_api.http
    uvicorn.run(
        create_app(settings),
        host=http.host,
        port=http.port,
        lifespan="on",
        access_log=False,
        log_level="info",
    )
