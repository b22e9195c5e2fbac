"""Endpoints on the real stack: lists, filters, paging, by id, aggregations (each checked against the raw
rows of the same seeded database), bad input, and recording outcomes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from kubernaut.problems import TYPE_PATTERN
from tests.contextapi import history
from tests.contextapi.replicas import SEEDED, Replica

PROBLEM = "application/problem+json"
Replicas = tuple[Replica, Replica]


async def _incident_without_outcome(db: asyncpg.Connection) -> asyncpg.Record:
    row = await db.fetchrow(
        """SELECT r.id, r.namespace, r.phase FROM remediation_requests r
           LEFT JOIN remediation_outcomes o ON o.request_id = r.id
           WHERE o.request_id IS NULL ORDER BY r.id LIMIT 1"""
    )
    assert row is not None
    return row


async def test_list_defaults_to_newest_first_page(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    r = await a.get("/api/v1/incidents")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"incidents", "total", "limit", "offset"}
    assert (body["total"], body["limit"], body["offset"]) == (len(rows), 50, 0)
    assert len(rows) >= SEEDED
    assert [i["id"] for i in body["incidents"]] == history.newest_first(rows)[:50]


def _filters(rows: list[history.Row]) -> list[dict[str, Any]]:
    newest = max(r["first_seen"] for r in rows)
    repeated = max({r["fingerprint"] for r in rows}, key=lambda fp: sum(r["fingerprint"] == fp for r in rows))
    return [
        {"namespace": "payments"},
        {"severity": "critical"},
        {"alertname": "KubePodCrashLooping"},
        {"fingerprint": repeated},
        {"phase": "failed"},
        {"since": newest - timedelta(days=10), "until": newest - timedelta(days=3)},
        {"namespace": "checkout", "phase": "completed", "severity": "warning"},
    ]


async def test_each_filter_matches_the_rows(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    for f in _filters(rows):
        expected = history.newest_first([r for r in rows if history.matches(r, f)])
        assert 1 < len(expected) < len(rows), f"filter {f} must select some but not all rows"
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in f.items()}
        r = await a.get("/api/v1/incidents", limit=1000, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == len(expected), f
        assert [i["id"] for i in body["incidents"]] == expected[:1000], f


async def test_paging_visits_every_incident_once(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    expected = history.newest_first([r for r in rows if r["namespace"] == "checkout"])
    seen: list[int] = []
    offset = 0
    while True:
        body = (await a.get("/api/v1/incidents", namespace="checkout", limit=37, offset=offset)).json()
        assert body["total"] == len(expected)
        if not body["incidents"]:
            break
        seen += [i["id"] for i in body["incidents"]]
        offset += 37
    assert seen == expected
    assert offset >= len(expected)


async def test_get_by_id_and_unknown_id(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    storm = await db.fetchrow(
        """SELECT r.*, o.action, o.succeeded FROM remediation_requests r
           JOIN remediation_outcomes o ON o.request_id = r.id WHERE r.is_storm ORDER BY r.id LIMIT 1"""
    )
    assert storm is not None
    r = await a.get(f"/api/v1/incidents/{storm['id']}")
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == storm["id"]
    assert (got["alertname"], got["namespace"], got["phase"]) == (
        storm["signal_name"],
        storm["namespace"],
        storm["phase"],
    )
    assert got["resource"] == {"kind": storm["resource_kind"], "name": storm["resource_name"]}
    assert got["outcome"]["action"] == storm["action"]
    assert got["outcome"]["succeeded"] == storm["succeeded"]
    assert got["storm"]["affected_resources"] == storm["affected_resources"]
    assert got["labels"]["namespace"] == storm["namespace"]
    assert datetime.fromisoformat(got["first_seen"]) == storm["first_seen"]

    unknown = await db.fetchval("SELECT max(id) + 1000 FROM remediation_requests")
    r = await a.get(f"/api/v1/incidents/{unknown}")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert (r.json()["status"], r.json()["field"]) == (404, "id")
    r = await a.get("/api/v1/incidents/abc")
    assert r.status_code == 400
    assert r.json()["field"] == "id"


TIMED = (
    "/api/v1/incidents",
    "/api/v1/aggregations/success-rate",
    "/api/v1/aggregations/namespaces",
    "/api/v1/aggregations/severity",
)


@pytest.mark.parametrize("path", TIMED)
async def test_the_extreme_times_in_range_are_answered(replicas: Replicas, path: str) -> None:
    a, _ = replicas
    r = await a.get(path, since="0001-01-01T00:00:00Z", until="9999-12-31T23:59:59Z")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/incidents", {"limit": "0"}, "limit"),
        ("/api/v1/incidents", {"limit": "1001"}, "limit"),
        ("/api/v1/incidents", {"offset": "-5"}, "offset"),
        ("/api/v1/incidents", {"phase": "resolved"}, "phase"),
        ("/api/v1/incidents", {"since": "last tuesday"}, "since"),
        ("/api/v1/incidents", {"namepsace": "payments"}, "namepsace"),
        ("/api/v1/incidents", {"": "x"}, "(unnamed)"),
        ("/api/v1/aggregations/success-rate", {"until": "2020-13-45"}, "until"),
        ("/api/v1/aggregations/trend", {"days": "0"}, "days"),
        ("/api/v1/aggregations/trend", {"days": "366"}, "days"),
        ("/api/v1/aggregations/namespaces", {"namespace": "payments"}, "namespace"),
        *(
            (path, {name: value}, name)
            for path in TIMED
            for name, value in (
                ("since", "0001-01-01T00:00:00+01:00"),
                ("until", "9999-12-31T23:59:59-01:00"),
            )
        ),
    ],
)
async def test_bad_parameters_are_problems_naming_the_field(
    replicas: Replicas, path: str, params: dict[str, str], field: str
) -> None:
    a, _ = replicas
    r = await a.get(path, **params)
    assert r.status_code == 400
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert (problem["status"], problem["field"]) == (400, field)
    assert field in problem["detail"]


async def test_success_rate_honours_every_filter(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    overall = history.success_rate(rows, {})
    newest = max(r["first_seen"] for r in rows)
    cases: list[dict[str, Any]] = [
        {},
        {"namespace": "payments"},
        {"severity": "critical"},
        {"alertname": "KubePodCrashLooping"},
        {"action": "restart_pod"},
        {"since": newest - timedelta(days=30)},
        {"namespace": "staging-web", "action": "restart_pod"},
    ]
    for f in cases:
        expected = history.success_rate(rows, f)
        if f:
            assert 0 < expected["total"] < overall["total"], f
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in f.items()}
        body = (await a.get("/api/v1/aggregations/success-rate", **params)).json()
        assert (body["total"], body["succeeded"]) == (expected["total"], expected["succeeded"]), f
        assert body["failed"] == expected["total"] - expected["succeeded"]
        assert body["success_rate"] == pytest.approx(expected["succeeded"] / expected["total"], abs=1e-6)
        got = {x["action"]: (x["succeeded"], x["failed"]) for x in body["by_action"]}
        assert got == expected["by_action"], f


@pytest.mark.parametrize(
    ("path", "column", "key", "f"),
    [
        ("/api/v1/aggregations/namespaces", "namespace", "namespaces", {}),
        ("/api/v1/aggregations/namespaces", "namespace", "namespaces", {"severity": "critical"}),
        ("/api/v1/aggregations/severity", "severity", "severities", {}),
        ("/api/v1/aggregations/severity", "severity", "severities", {"namespace": "payments"}),
        ("/api/v1/aggregations/severity", "severity", "severities", {"alertname": "OOMKilled"}),
    ],
)
async def test_breakdowns_match_the_rows(
    replicas: Replicas, db: asyncpg.Connection, path: str, column: str, key: str, f: dict[str, str]
) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    expected = history.breakdown(rows, column, f)
    body = (await a.get(path, **f)).json()
    got = {x[column]: (x["incidents"], x["open"], x["succeeded"], x["failed"]) for x in body[key]}
    assert got == expected
    assert [x["incidents"] for x in body[key]] == sorted((x["incidents"] for x in body[key]), reverse=True)


@pytest.mark.parametrize(
    ("days", "f"), [(30, {}), (7, {"namespace": "payments"}), (90, {"severity": "info"})]
)
async def test_trend_matches_the_rows(
    replicas: Replicas, db: asyncpg.Connection, days: int, f: dict[str, str]
) -> None:
    a, _ = replicas
    rows = await history.raw_rows(db)
    today = await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    body = (await a.get("/api/v1/aggregations/trend", days=days, **f)).json()
    got = [(p["date"], p["incidents"], p["succeeded"], p["failed"]) for p in body["points"]]
    assert len(got) == days
    assert got == history.trend(rows, today, days, f)
    assert sum(p[1] for p in got) > 0


async def test_outcome_is_recorded_idempotently(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    incident = await _incident_without_outcome(db)
    url = f"/api/v1/incidents/{incident['id']}/outcome"
    body = {"action": "restart_pod", "succeeded": True, "detail": "pod restarted, alert cleared"}
    first = await a.client.post(url, json=body)
    assert first.status_code == 200, first.text
    got = first.json()
    assert got["phase"] == "completed"
    assert got["outcome"]["action"] == "restart_pod"
    assert got["outcome"]["detail"] == "pod restarted, alert cleared"
    again = await a.client.post(url, json=body)
    assert (again.status_code, again.json()) == (200, got)

    conflict = await a.client.post(url, json={**body, "succeeded": False})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == PROBLEM
    assert conflict.json()["existing"]["succeeded"] is True
    stored = await db.fetchrow("SELECT * FROM remediation_outcomes WHERE request_id = $1", incident["id"])
    assert stored is not None
    assert (stored["action"], stored["succeeded"]) == ("restart_pod", True)
    assert await db.fetchval("SELECT phase FROM remediation_requests WHERE id = $1", incident["id"]) == (
        "completed"
    )


async def test_failed_outcome_sets_phase_failed(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    incident = await _incident_without_outcome(db)
    r = await a.client.post(
        f"/api/v1/incidents/{incident['id']}/outcome", json={"action": "drain_node", "succeeded": False}
    )
    assert r.status_code == 200
    assert (r.json()["phase"], r.json()["outcome"]["detail"]) == ("failed", "")
    assert (
        await db.fetchval("SELECT phase FROM remediation_requests WHERE id = $1", incident["id"]) == "failed"
    )


async def test_bad_outcomes_change_nothing(replicas: Replicas, db: asyncpg.Connection) -> None:
    a, _ = replicas
    incident = await _incident_without_outcome(db)
    url = f"/api/v1/incidents/{incident['id']}/outcome"
    cases = [
        ({"json": {"action": "restart_pod", "succeeded": "yes"}}, 400, "succeeded"),
        ({"json": {"succeeded": True}}, 400, "action"),
        ({"json": {"action": "x", "succeeded": True, "by": "me"}}, 400, "by"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "(body)"),
        ({"content": b"action=x", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
        ({"json": {"action": "x" * 70_000, "succeeded": True}}, 413, "(body)"),
        ({"json": {"action": "restart\x00pod", "succeeded": True}}, 400, "action"),
        ({"json": {"action": "restart_pod", "succeeded": True, "detail": "a\x00b"}}, 400, "detail"),
        (
            {
                "content": b'{"action": "x\\ud800", "succeeded": true}',
                "headers": {"content-type": "application/json"},
            },
            400,
            "(body)",
        ),
    ]
    for kwargs, status, field in cases:
        r = await a.client.post(url, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, (kwargs, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert re.fullmatch(TYPE_PATTERN, r.json()["type"]), r.text
        if field is not None:
            assert r.json()["field"] == field
    unknown = await db.fetchval("SELECT max(id) + 1000 FROM remediation_requests")
    r = await a.client.post(f"/api/v1/incidents/{unknown}/outcome", json={"action": "x", "succeeded": True})
    assert r.status_code == 404
    assert (
        await db.fetchval("SELECT count(*) FROM remediation_outcomes WHERE request_id = $1", incident["id"])
        == 0
    )
    assert (
        await db.fetchval("SELECT phase FROM remediation_requests WHERE id = $1", incident["id"])
        == (incident["phase"])
    )


async def test_health_ready_and_metrics(replicas: Replicas) -> None:
    a, _ = replicas
    assert (await a.get("/healthz")).json() == {
        "status": "ok",
        "l1": "available",
        "breaker": "closed",
        "notifications": "listening",
    }
    assert (await a.get("/readyz")).status_code == 200
    await a.get("/api/v1/incidents")
    text = (await a.get("/metrics")).text
    for name in (
        "context_api_requests_total",
        "context_api_request_duration_seconds",
        "context_api_cache_hits_total",
        "context_api_cache_misses_total",
        "context_api_l3_queries_total",
        "context_api_l3_query_duration_seconds",
        "context_api_breaker_state",
        "context_api_l1_available",
        "context_api_singleflight_collapsed_total",
        "context_api_invalidations_total",
    ):
        assert name in text
    assert await a.metric("context_api_requests_total", route="/api/v1/incidents", status="200") == 1
    assert await a.metric("context_api_l1_available") == 1
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await a.get("/api/v1/incidents", since=since)).status_code == 200
