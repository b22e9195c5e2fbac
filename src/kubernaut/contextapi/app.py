"""The Context-API ASGI app (``create_app``) and its server (``serve``, run by ``kubernaut context-api``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubernaut import httpserver, logs, production
from kubernaut.config import ConfigError, Settings
from kubernaut.contextapi import openapi, queries, routes
from kubernaut.contextapi.auth import BearerAuth, TokenCheck, load_tokens
from kubernaut.contextapi.metrics import ContextApiMetrics
from kubernaut.contextapi.runtime import ContextApi
from kubernaut.contextapi.ui import UI_ROUTES
from kubernaut.openapi import docs_routes
from kubernaut.problems import Problem, http_exception, internal_error, problem_handler


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


def create_app(settings: Settings) -> Starlette:
    """One replica: its own L2, metrics registry, pools; opened and closed by the ASGI lifespan."""
    production.check(settings, "context_api")
    metrics = ContextApiMetrics()
    auth = settings.context_api.auth
    check: TokenCheck | None = None
    if auth.enabled:
        if auth.tokens_file is None:
            raise ConfigError("context_api.auth.tokens_file: required while context_api.auth.enabled is true")
        check = TokenCheck(load_tokens(auth.tokens_file))

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
            Problem: problem_handler,
            HTTPException: http_exception,
            Exception: internal_error,
            **dict.fromkeys(queries.STORE_ERRORS, routes.store_error),
        },
    )
    app.router.redirect_slashes = False  # a trailing slash is a 404 problem, not a redirect
    app.state.token_check = check  # the operator's page checks its cookie against the same tokens
    app.state.ui = settings.context_api.ui
    if check is not None:

        def refused(reason: str) -> None:
            metrics.auth_failures.labels(reason).inc()

        app.add_middleware(BearerAuth, check=check, on_failure=refused)
    app.add_middleware(_RequestMetrics, metrics=metrics)
    return app


def serve(settings: Settings) -> None:
    logs.configure()
    httpserver.run(create_app(settings), settings.context_api.http)
