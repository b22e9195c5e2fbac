"""The HTTP endpoints. Cacheable answers carry ``X-Cache: l1|l2|l3`` naming the tier that served them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kubernaut.contextapi import queries
from kubernaut.contextapi.params import (
    ALL_TAG,
    IncidentQuery,
    NamespacesQuery,
    OutcomeBody,
    QueryModel,
    SeverityQuery,
    SuccessRateQuery,
    TrendQuery,
    incident_tag,
    namespace_tag,
    parse_incident_id,
)
from kubernaut.contextapi.runtime import ContextApi
from kubernaut.problems import Problem, read_body

Q = TypeVar("Q", bound=QueryModel)
MAX_BODY_BYTES = 64 * 1024
JSON = "application/json"
CLIENT_CLOSED_REQUEST = 499
STORE_RETRY_AFTER_S = 5


def _api(request: Request) -> ContextApi:
    api: ContextApi = request.app.state.api
    return api


def _not_found(request: Request, headers: dict[str, str] | None = None) -> Response:
    detail = f"no incident with id {request.path_params['id']}"
    return Problem(404, "not-found", detail, field="id", headers=headers).response(request.url.path)


async def _l3(
    api: ContextApi, name: str, run: Callable[[queries.Conn], Awaitable[Any]], *, write: bool = False
) -> Any:
    """A read goes to a standby when ``postgres.read_dsn`` is set (fenced, see standby.py)."""
    with api.metrics.l3(name):
        return await (api.reads.write(run) if write else api.reads.read(run))


async def _cached(
    request: Request,
    key: str,
    tags: list[str],
    name: str,
    run: Callable[[queries.Conn], Awaitable[bytes | None]],
) -> Response:
    api = _api(request)
    body, tier = await api.cache.get(key, tags, lambda: _l3(api, name, run))
    headers = {"X-Cache": tier.value}
    if body is None:
        return _not_found(request, headers)
    return Response(body, media_type=JSON, headers=headers)


async def _query(
    request: Request,
    model: type[Q],
    name: str,
    run: Callable[[queries.Conn, Q], Awaitable[bytes | None]],
) -> Response:
    q = model.parse(request.query_params.multi_items())
    return await _cached(request, q.cache_key(), q.tags(), name, lambda conn: run(conn, q))


async def list_incidents(request: Request) -> Response:
    return await _query(request, IncidentQuery, "incidents_list", queries.list_incidents)


async def get_incident(request: Request) -> Response:
    incident_id = parse_incident_id(request.path_params["id"])
    return await _cached(
        request,
        f"incident?id={incident_id}",
        [incident_tag(incident_id)],
        "incident",
        lambda conn: queries.get_incident(conn, incident_id),
    )


async def success_rate(request: Request) -> Response:
    return await _query(request, SuccessRateQuery, "success_rate", queries.success_rate)


async def namespaces(request: Request) -> Response:
    return await _query(request, NamespacesQuery, "namespaces", queries.by_namespace)


async def severity(request: Request) -> Response:
    return await _query(request, SeverityQuery, "severity", queries.by_severity)


async def trend(request: Request) -> Response:
    return await _query(request, TrendQuery, "trend", queries.trend)


async def _read_body(request: Request) -> bytes | Response:
    try:
        return await read_body(request, MAX_BODY_BYTES)
    except ClientDisconnect:
        # Not the service's failure, and nobody is left to answer: counted as nginx's 499.
        return Response(status_code=CLIENT_CLOSED_REQUEST)


async def record_outcome(request: Request) -> Response:
    incident_id = parse_incident_id(request.path_params["id"])
    raw = await _read_body(request)
    if isinstance(raw, Response):
        return raw
    body = OutcomeBody.parse(raw)
    api = _api(request)
    result = await _l3(
        api, "record_outcome", lambda conn: queries.record_outcome(conn, incident_id, body), write=True
    )
    if result.status == "not_found":
        return _not_found(request)
    if result.status == "conflict":
        return Problem(
            409,
            "outcome-conflict",
            "a different outcome is already recorded for this incident",
            extra={"existing": result.existing},
        ).response(request.url.path)
    if result.status == "recorded":
        assert result.namespace is not None
        await api.cache.invalidate([incident_tag(incident_id), namespace_tag(result.namespace), ALL_TAG])
    fresh = await _l3(api, "incident", lambda conn: queries.get_incident(conn, incident_id), write=True)
    return Response(fresh, media_type=JSON)


async def healthz(request: Request) -> Response:
    """Liveness, with the cache's view of Redis and of PostgreSQL's change notifications for humans
    (neither being away is unhealthy)."""
    api = _api(request)
    notifications = "listening" if api.changes.listening else "reconnecting"
    l1 = api.cache.l1
    if l1 is None:
        return JSONResponse({"status": "ok", "l1": "disabled", "notifications": notifications})
    return JSONResponse(
        {
            "status": "ok",
            "l1": "available" if l1.available else "unavailable",
            "breaker": l1.breaker.state.name.lower().replace("_", "-"),
            "notifications": notifications,
        }
    )


async def readyz(request: Request) -> Response:
    """PostgreSQL only: Redis is optional by design. With ``read_dsn``, a standby answering is enough
    (reads go on while the primary fails over; reads fall back to the primary otherwise)."""
    api = _api(request)
    error: BaseException | None = None
    for pool in (api.reads.standby, api.pool):
        if pool is None:
            continue
        try:
            async with pool.acquire(timeout=1.0) as conn:
                await conn.fetchval("SELECT 1", timeout=1.0)
        except queries.STORE_ERRORS as err:
            error = err
            continue
        return JSONResponse({"status": "ready"})
    return Problem(503, "not-ready", f"PostgreSQL unavailable: {error}").response(request.url.path)


async def metrics(request: Request) -> Response:
    return Response(_api(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def store_error(request: Request, exc: Exception) -> Response:
    detail = f"PostgreSQL unavailable: {type(exc).__name__}"
    retry = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return Problem(503, "unavailable", detail, headers=retry).response(request.url.path)


ROUTES = [
    Route("/api/v1/incidents", list_incidents, methods=["GET"]),
    Route("/api/v1/incidents/{id}", get_incident, methods=["GET"]),
    Route("/api/v1/incidents/{id}/outcome", record_outcome, methods=["POST"]),
    Route("/api/v1/aggregations/success-rate", success_rate, methods=["GET"]),
    Route("/api/v1/aggregations/namespaces", namespaces, methods=["GET"]),
    Route("/api/v1/aggregations/severity", severity, methods=["GET"]),
    Route("/api/v1/aggregations/trend", trend, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
