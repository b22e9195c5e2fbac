"""The gateway's HTTP service: ``create_app(settings)`` builds the ASGI app; ``serve`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kubernaut.config import ConfigError, SentinelRedis, Settings
from kubernaut.gateway import openapi
from kubernaut.gateway.adapters import alertmanager, kubernetes_event
from kubernaut.gateway.auth import AuthFailure, TokenAuth, load_tokens
from kubernaut.gateway.flush import CountFlusher
from kubernaut.gateway.group import redis_group
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.pipeline import Pipeline
from kubernaut.gateway.problems import Problem
from kubernaut.gateway.redis_state import RedisState
from kubernaut.gateway.signal import Signal, SourceType
from kubernaut.gateway.store import RequestStore
from kubernaut.openapi import docs_routes
from kubernaut.store.migrate import migrate_dsn

log = structlog.get_logger("kubernaut.gateway")

PROMETHEUS_ROUTE = "/api/v1/signals/prometheus"
EVENT_ROUTE = "/api/v1/signals/kubernetes-event"
REDIS_GROUP_ROUTE = "/api/v1/redis-group"
_STARTUP_TIMEOUT_S = 30.0


def _json_response(body: object, status: int) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


class Gateway:
    """The service's parts and their lifecycle; the HTTP handlers are its methods."""

    def __init__(self, settings: Settings) -> None:
        gw = settings.gateway
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.auth: TokenAuth | None = None
        if gw.auth.enabled:
            if gw.auth.tokens_file is None:
                raise ConfigError("gateway.auth.tokens_file: required while gateway.auth.enabled is true")
            self.auth = TokenAuth(load_tokens(gw.auth.tokens_file))
        instance_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.redis = RedisState(gw, self.metrics, instance_id)
        self.store = RequestStore(settings.postgres, self.metrics, gw.storm.max_affected_resources)
        self.pipeline = Pipeline(gw, self.redis, self.store, self.metrics)
        self.flusher = CountFlusher(self.redis, self.store, self.metrics, gw.count_flush_interval_s)
        self._flush_task: asyncio.Task[None] | None = None
        self._http_children: dict[tuple[str, int], Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await migrate_dsn(self.settings.postgres.dsn.get_secret_value())
        await self.store.start()
        await self.redis.start(_STARTUP_TIMEOUT_S)
        self._flush_task = asyncio.create_task(self.flusher.run())
        log.info("gateway started", redis=self.redis.handle.describe(), instance=self.redis.instance_id)

    async def stop(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.wait([self._flush_task], timeout=5.0)  # bounded: see RedisState.close
            await self.flusher.final()
        await self.redis.close()
        await self.store.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- HTTP --------------------------------------------------------------------------------------

    def _observe(self, route: str, status: int, started: float) -> None:
        children = self._http_children.get((route, status))
        if children is None:
            children = self._http_children[(route, status)] = (
                self.metrics.http_requests.labels(route=route, status=str(status)),
                self.metrics.http_duration.labels(route=route),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def _source(self, request: Request) -> str:
        if self.auth is None:
            return request.client.host if request.client else "unknown"
        try:
            return self.auth.identify(request.headers.get("authorization"))
        except AuthFailure as failure:
            self.metrics.auth_failures.labels(reason=failure.reason).inc()
            raise

    async def _body(self, request: Request) -> bytes:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Problem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"Content-Type must be application/json, got {media_type or 'none'!r}",
                field="Content-Type",
            )
        limit = self.settings.gateway.max_body_bytes
        too_large = Problem(
            413, "body-too-large", "Payload too large", f"the body exceeds {limit} bytes", field="(body)"
        )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise too_large
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _signals(
        self, request: Request, route: str, source_type: SourceType, parse: Callable[[bytes], list[Signal]]
    ) -> Response:
        started = time.perf_counter()
        try:
            source = self._source(request)
            signals = parse(await self._body(request))
            status, outcomes = await self.pipeline.ingest(signals, source_type, source)
            response = _json_response({"signals": [o.as_json() for o in outcomes]}, status)
        except Problem as problem:
            response = problem.response(route)
        except Exception:
            log.exception("unexpected error", route=route)
            response = Problem(
                500, "internal", "Internal error", "unexpected error; see the gateway log"
            ).response(route)
        self._observe(route, response.status_code, started)
        return response

    async def prometheus(self, request: Request) -> Response:
        max_alerts = self.settings.gateway.max_alerts_per_request
        return await self._signals(
            request, PROMETHEUS_ROUTE, "prometheus", lambda body: alertmanager.parse(body, max_alerts)
        )

    async def kubernetes_event(self, request: Request) -> Response:
        return await self._signals(
            request, EVENT_ROUTE, "kubernetes-event", lambda body: [kubernetes_event.parse(body)]
        )

    async def healthz(self, _request: Request) -> Response:
        return _json_response({"status": "ok"}, 200)

    async def readyz(self, _request: Request) -> Response:
        redis_ok, postgres_ok = await asyncio.gather(self.redis.ping(), self.store.ping())
        ready = redis_ok and postgres_ok
        body = {"ready": ready, "redis_master": redis_ok, "postgres": postgres_ok}
        return _json_response(body, 200 if ready else 503)

    async def redis_group_endpoint(self, request: Request) -> Response:
        """The Redis HA group as Sentinel sees it; behind the webhook token (it names internal addresses)."""
        try:
            self._source(request)
        except Problem as problem:
            return problem.response(REDIS_GROUP_ROUTE)
        if not isinstance(self.settings.gateway.redis, SentinelRedis):
            return Problem(
                404, "not-found", "Not Found", "the gateway's Redis is not a Sentinel group"
            ).response(REDIS_GROUP_ROUTE)
        group = await redis_group(self.settings.gateway.redis)
        return Response(group.model_dump_json(), media_type="application/json")

    async def metrics_endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class WebhookFastPath:
    """ASGI entry: the webhook POSTs go straight to their handlers, everything else (other methods
    and paths, lifespan) to the Starlette app. The handlers answer every error themselves (RFC 7807),
    so Starlette's routing and exception middleware only cost time there: about a tenth of the
    gateway's CPU per webhook (benchmarks/README.md, "where the time goes")."""

    def __init__(self, app: Starlette, handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.app = app
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._handlers.get(scope["path"])
            if handler is not None:
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, endpoint, methods=[method])

    app = Starlette(
        routes=[
            route(PROMETHEUS_ROUTE, gateway.prometheus, "POST"),
            route(EVENT_ROUTE, gateway.kubernetes_event, "POST"),
            route("/healthz", gateway.healthz, "GET"),
            route("/readyz", gateway.readyz, "GET"),
            route("/metrics", gateway.metrics_endpoint, "GET"),
            route(REDIS_GROUP_ROUTE, gateway.redis_group_endpoint, "GET"),
            *docs_routes(openapi.spec()),
        ],
        lifespan=gateway.lifespan,
    )
    app.state.gateway = gateway
    return app


def fast_path(app: Starlette) -> WebhookFastPath:
    """What the server runs: ``app`` (from :func:`create_app`) with its webhooks on the fast path."""
    gateway: Gateway = app.state.gateway
    return WebhookFastPath(app, {PROMETHEUS_ROUTE: gateway.prometheus, EVENT_ROUTE: gateway.kubernetes_event})


def serve(settings: Settings) -> None:
    """Run the gateway with uvicorn (uvloop + httptools) on ``gateway.http`` until SIGTERM/SIGINT."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    )
    app = create_app(settings)
    http = settings.gateway.http
    uvicorn.run(
        fast_path(app),
        host=http.host,
        port=http.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="info",
        server_header=False,
        proxy_headers=False,  # the rate-limit source is the peer address; forwarded headers could fake it
    )
