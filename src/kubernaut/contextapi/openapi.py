"""The Context-API's OpenAPI 3.1 document: the request models of params.py, the answers of schemas.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kubernaut.contextapi import params, schemas
from kubernaut.contextapi.ui.data import UiFilters
from kubernaut.openapi import Operation, build_spec


class UiQuery(UiFilters):
    """The operator page's query string as documented: its filters plus the optional ``token``."""

    token: str | None = None


TITLE = "Kubernaut Context-API"
VERSION = "1"
INCIDENT_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
READ = (400, 401, 503)


def _read(
    path: str,
    summary: str,
    answer: type[BaseModel],
    tag: str,
    query: type[BaseModel] | None = None,
    problems: tuple[int, ...] = (),
    **details: Any,
) -> Operation:
    """A cached, token-protected GET answering ``answer``."""
    return Operation(
        "GET", path, summary, {200: answer}, (*READ, *problems), query=query, secured=True, tag=tag, **details
    )


AGGREGATIONS: list[tuple[str, str, type[BaseModel], type[BaseModel]]] = [
    (
        "success-rate",
        "Success rate of recorded outcomes, overall and per action",
        schemas.SuccessRate,
        params.SuccessRateQuery,
    ),
    (
        "namespaces",
        "Incident counts and success rate per namespace",
        schemas.NamespaceBreakdown,
        params.NamespacesQuery,
    ),
    (
        "severity",
        "Incident counts and success rate per severity",
        schemas.SeverityBreakdown,
        params.SeverityQuery,
    ),
    ("trend", "Incidents per UTC day for the last N days", schemas.Trend, params.TrendQuery),
]

OPERATIONS = [
    _read(
        "/api/v1/incidents",
        "List incidents (RemediationRequests), newest first",
        schemas.IncidentPage,
        "incidents",
        params.IncidentQuery,
        description="Time filters apply to first_seen: since inclusive, until exclusive, naive times UTC.",
    ),
    _read(
        "/api/v1/incidents/{id}",
        "One incident and its outcome",
        schemas.Incident,
        "incidents",
        problems=(404,),
        path_params={"id": INCIDENT_ID},
    ),
    Operation(
        "POST",
        "/api/v1/incidents/{id}/outcome",
        "Record what was done about an incident",
        {200: schemas.Incident},
        (400, 401, 404, 409, 413, 415, 503),
        path_params={"id": INCIDENT_ID},
        body=params.OutcomeBody,
        secured=True,
        tag="incidents",
        description="The same outcome again is a no-op, a different one a 409. Invalidates every cache tier.",
    ),
    *(
        _read(f"/api/v1/aggregations/{name}", summary, answer, "aggregations", query)
        for name, summary, answer, query in AGGREGATIONS
    ),
    Operation(
        "GET",
        "/ui",
        "The operator's page (token once via ?token= or the login form, then an HttpOnly cookie)",
        {200: None, 303: None, 401: None},
        (400,),
        query=UiQuery,
        tag="ui",
        media_type="text/html",
    ),
    Operation(
        "POST",
        "/ui/login",
        "Sign in with the token (form field `token`)",
        {303: None, 401: None, 413: None},
        tag="ui",
        media_type="text/html",
    ),
    Operation(
        "POST", "/ui/logout", "Sign out (clears the cookie)", {303: None}, tag="ui", media_type="text/html"
    ),
    Operation("GET", "/healthz", "Liveness and the cache's view of Redis", {200: schemas.Health}, tag="ops"),
    Operation("GET", "/readyz", "Ready when PostgreSQL answers", {200: schemas.Ready}, (503,), tag="ops"),
    Operation("GET", "/metrics", "Prometheus metrics", {200: None}, tag="ops", media_type="text/plain"),
]


def spec() -> dict[str, Any]:
    return build_spec(
        TITLE,
        VERSION,
        "Remediation history for downstream (AI) services, served through an L1 Redis / L2 in-process /"
        " L3 PostgreSQL cache; every cacheable answer names its tier in `X-Cache`.",
        OPERATIONS,
    )
