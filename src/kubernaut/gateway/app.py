"""The gateway's HTTP service: ``create_app(settings)`` builds the ASGI app; ``serve`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kubernaut import httpserver, logs, production
from kubernaut.background import Worker
from kubernaut.config import ConfigError, SentinelRedis, Settings
from kubernaut.gateway import openapi
from kubernaut.gateway.adapters import Batch, alertmanager, kubernetes_event
from kubernaut.gateway.auth import AuthFailure, TokenAuth, load_tokens
from kubernaut.gateway.flush import CountFlusher
from kubernaut.gateway.group import redis_group
from kubernaut.gateway.metrics import (
    MULTIPROC_ENV,
    TALLY_FLUSH_S,
    GatewayMetrics,
    forget_dead_workers,
    release_worker,
)
from kubernaut.gateway.pipeline import Pipeline
from kubernaut.gateway.redis_state import RedisState
from kubernaut.gateway.signal import SourceType
from kubernaut.gateway.store import RequestStore
from kubernaut.openapi import docs_routes
from kubernaut.problems import (
    JSON,
    PROBLEM_JSON,
    Problem,
    http_exception,
    internal,
    internal_error,
    read_asgi_body,
)
from kubernaut.store.migrate import prepare_schema

log = structlog.get_logger("kubernaut.gateway")

PROMETHEUS_ROUTE = "/api/v1/signals/prometheus"
EVENT_ROUTE = "/api/v1/signals/kubernetes-event"
REDIS_GROUP_ROUTE = "/api/v1/redis-group"
_STARTUP_TIMEOUT_S = 30.0
CLIENT_CLOSED_REQUEST = 499


def _json_response(body: object, status: int) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


class Gateway:
    """The service's parts and their lifecycle; the HTTP handlers are its methods."""

    def __init__(self, settings: Settings) -> None:
        gw = settings.gateway
        self.settings = settings
        self.metrics = GatewayMetrics()
        production.check(settings, "gateway")
        self.auth: TokenAuth | None = None
        if gw.auth.enabled:
            if gw.auth.tokens_file is None:
                raise ConfigError("gateway.auth.tokens_file: required while gateway.auth.enabled is true")
            self.auth = TokenAuth(load_tokens(gw.auth.tokens_file))
        instance_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.redis = RedisState(gw, self.metrics, instance_id)
        pg = settings.postgres.for_service("gateway")
        self.store = RequestStore(pg, self.metrics, gw.storm.max_affected_resources)
        self.flusher = CountFlusher(self.redis, self.store, self.metrics, gw.count_flush_interval_s)
        self._flush_worker = Worker(
            "gateway-count-flusher", self.flusher.step, interval=self.flusher.interval_s
        )
        self.pipeline = Pipeline(gw, self.redis, self.store, self.metrics, flush_soon=self._flush_worker.wake)
        self._http_children: dict[tuple[str, int], Any] = {}
        self._tally_worker = Worker("gateway-metrics-tally", self._flush_tally, interval=TALLY_FLUSH_S)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await prepare_schema(self.settings.postgres, "gateway")
        await self.store.start()
        await self.redis.start(_STARTUP_TIMEOUT_S)
        self.pipeline.start()
        self._flush_worker.start()
        self._tally_worker.start()
        log.info("gateway started", redis=self.redis.handle.describe(), instance=self.redis.instance_id)

    async def stop(self) -> None:
        if self._flush_worker.running:
            await self._flush_worker.stop(timeout_s=5.0)  # bounded: see RedisState.close
            await self.flusher.final()
        await self.pipeline.close()
        await self.redis.close()
        await self.store.close()
        await self._tally_worker.stop()
        self.metrics.tally.flush()
        release_worker()

    async def _flush_tally(self) -> None:
        self.metrics.tally.flush()

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
        if status < 300:
            self.metrics.tally.inc(children[0])
            self.metrics.tally.observe(children[1], time.perf_counter() - started)
        else:
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    def _source(self, scope: Scope) -> str:
        """The request's source: its token's name, or its address when authentication is off."""
        if self.auth is None:
            client = scope.get("client")
            return client[0] if client else "unknown"
        authorization = [v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"]
        try:
            return self.auth.identify(authorization)
        except AuthFailure as failure:
            self.metrics.auth_failures.labels(reason=failure.reason).inc()
            raise

    def _rejected(self, batch: Batch, source_type: SourceType) -> None:
        for rejection in batch.rejections:
            self.metrics.signals_rejected.labels(source_type=source_type, reason=rejection.reason).inc()
        if batch.rejections:
            self.metrics.signals.labels(source_type=source_type, outcome="rejected").inc(
                len(batch.rejections)
            )
        batch.refuse_if_empty()

    async def _signals(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        source_type: SourceType,
        parse: Callable[[bytes], Batch],
    ) -> int:
        """Answer one webhook (every error as a problem, RFC 7807); return the status sent."""
        started = time.perf_counter()
        media_type: str | None = JSON
        headers: Mapping[str, str] = {}
        try:
            source = self._source(scope)
            batch = parse(await read_asgi_body(scope, receive, self.settings.gateway.max_body_bytes))
            self._rejected(batch, source_type)
            status, outcomes = await self.pipeline.ingest(batch.signals, source_type, source)
            answers: list[dict[str, object]] = [o.as_json() for o in outcomes]
            if batch.rejections:
                answers = _in_request_order(batch, answers)
            body = orjson.dumps({"signals": answers})
        except Problem as problem:
            status, body, media_type, headers = _problem(problem, route)
        except ClientDisconnect:
            # Not the gateway's failure: nothing was taken, nobody is left to answer (nginx's 499).
            log.info("client disconnected before sending its whole body", route=route)
            status, body, media_type = CLIENT_CLOSED_REQUEST, b"", None
        except Exception:
            log.exception("unexpected error", route=route)
            status, body, media_type, headers = _problem(
                internal("unexpected error; see the gateway log"), route
            )
        self._observe(route, status, started)
        await _answer(send, status, body, media_type, headers)
        return status

    async def prometheus(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_alerts = self.settings.gateway.max_alerts_per_request
        truncated: list[alertmanager.Webhook] = []

        def parse(body: bytes) -> Batch:
            hook = alertmanager.parse_webhook(body, max_alerts)
            if hook.truncated:
                truncated.append(hook)
            return hook.batch

        status = await self._signals(scope, receive, send, PROMETHEUS_ROUTE, "prometheus", parse)
        if truncated and status < 300:  # a refused webhook is retried: count it once
            self._truncated(truncated[0])

    def _truncated(self, hook: alertmanager.Webhook) -> None:
        self.metrics.alerts_truncated.labels(receiver=hook.receiver, group_key=hook.group_key).inc(
            hook.truncated
        )
        log.warning(
            "alertmanager truncated a webhook; raise the receiver's max_alerts",
            truncated_alerts=hook.truncated,
            received_alerts=hook.batch.size,
            receiver=hook.receiver,
            group_key=hook.group_key,
        )

    async def kubernetes_event(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._signals(scope, receive, send, EVENT_ROUTE, "kubernetes-event", kubernetes_event.parse)

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
            self._source(request.scope)
        except Problem as problem:
            return problem.response(REDIS_GROUP_ROUTE)
        if not isinstance(self.settings.gateway.redis, SentinelRedis):
            not_sentinel = Problem(404, "not-found", "the gateway's Redis is not a Sentinel group")
            return not_sentinel.response(REDIS_GROUP_ROUTE)
        group = await redis_group(self.settings.gateway.redis)
        return Response(group.model_dump_json(), media_type="application/json")

    async def metrics_endpoint(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _in_request_order(batch: Batch, taken: list[dict[str, object]]) -> list[dict[str, object]]:
    """The taken signals' answers and the rejections, each at its signal's index in the request."""
    out: list[dict[str, object]] = [{} for _ in range(batch.size)]
    for position, answer in zip(batch.positions, taken, strict=True):
        out[position] = answer
    for rejection in batch.rejections:
        out[rejection.index] = rejection.as_json()
    return out


def _problem(problem: Problem, route: str) -> tuple[int, bytes, str, Mapping[str, str]]:
    return problem.status, problem.encode(route), PROBLEM_JSON, problem.headers


async def _answer(
    send: Send, status: int, body: bytes, media_type: str | None, headers: Mapping[str, str]
) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    if media_type is not None:
        raw.append((b"content-type", media_type.encode()))
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


AsgiHandler = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Endpoint:
    """A handler speaking ASGI itself, as a Starlette route's endpoint."""

    def __init__(self, handler: AsgiHandler) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


class WebhookFastPath:
    """ASGI entry: the webhook POSTs go straight to their handlers, everything else (other methods
    and paths, lifespan) to the Starlette app. The handlers read the ASGI scope and answer every error
    themselves (RFC 7807), so Starlette's routing, exception middleware, request and response objects
    only cost time there (benchmarks/README.md, "where the time goes")."""

    def __init__(self, app: Starlette, handlers: dict[str, AsgiHandler]) -> None:
        self.app = app
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._handlers.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, endpoint, methods=[method])

    app = Starlette(
        routes=[
            Route(PROMETHEUS_ROUTE, _Endpoint(gateway.prometheus), methods=["POST"]),
            Route(EVENT_ROUTE, _Endpoint(gateway.kubernetes_event), methods=["POST"]),
            route("/healthz", gateway.healthz, "GET"),
            route("/readyz", gateway.readyz, "GET"),
            route("/metrics", gateway.metrics_endpoint, "GET"),
            route(REDIS_GROUP_ROUTE, gateway.redis_group_endpoint, "GET"),
            *docs_routes(openapi.spec()),
        ],
        lifespan=gateway.lifespan,
        exception_handlers={HTTPException: http_exception, Exception: internal_error},
    )
    app.router.redirect_slashes = False  # /healthz/ is a 404 problem, not a redirect
    app.state.gateway = gateway
    return app


def fast_path(app: Starlette) -> WebhookFastPath:
    """What the server runs: ``app`` (from :func:`create_app`) with its webhooks on the fast path."""
    gateway: Gateway = app.state.gateway
    return WebhookFastPath(app, {PROMETHEUS_ROUTE: gateway.prometheus, EVENT_ROUTE: gateway.kubernetes_event})


_PR_SET_PDEATHSIG = 1


def _worker_app(settings: Settings, parent: int) -> WebhookFastPath:
    """Run in each worker process (uvicorn's app factory): stop with the parent, however it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    logs.configure()
    forget_dead_workers(os.environ[MULTIPROC_ENV])
    return fast_path(create_app(settings))


def _empty(directory: str) -> None:
    for stale in Path(directory).glob("*.db"):
        stale.unlink()


def serve(settings: Settings) -> None:
    """Run the gateway on ``gateway.http`` until SIGTERM/SIGINT: one process, or ``gateway.http.workers``
    processes on one listening socket with their metrics merged through a per-run directory."""
    logs.configure()
    http = settings.gateway.http
    workers = http.workers or httpserver.default_workers()
    given = os.environ.get(MULTIPROC_ENV)
    if workers == 1:
        if given:
            _empty(given)
        httpserver.run(
            fast_path(create_app(settings)),
            http,
            reuse_port=http.reuse_port,
        )
        return
    create_app(settings)  # in the parent too: a configuration error stops here, with one line
    directory = given or tempfile.mkdtemp(prefix="kubernaut-gateway-metrics-")
    _empty(directory)  # a previous run's values, and what the check above wrote, are not this run's
    os.environ[MULTIPROC_ENV] = directory
    try:
        httpserver.run(
            functools.partial(_worker_app, settings, os.getpid()),
            http,
            workers=workers,
            factory=True,
            reuse_port=http.reuse_port,
        )
    finally:
        if given is None:
            shutil.rmtree(directory, ignore_errors=True)
