"""L3: the SQL behind every endpoint, against the schema of store/migrations (written by the gateway).

Answers are built here as JSON bytes, ready to cache and serve. Time filters apply to first_seen;
"open" is :func:`kubernaut.store.schema.open_request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from kubernaut.contextapi.params import (
    IncidentQuery,
    NamespacesQuery,
    OutcomeBody,
    SeverityQuery,
    SuccessRateQuery,
    TrendQuery,
)
from kubernaut.store.schema import OUTCOMES, REQUESTS, open_request

Conn = asyncpg.Connection | PoolConnectionProxy

# How PostgreSQL being away (stopped, restarting, unreachable) shows: answered 503, or from a last known
# answer. asyncpg's protocol state can be left mid-operation when the server goes away under it.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)

_SELECT_INCIDENT = f"""
SELECT r.id, r.fingerprint, r.signal_name, r.signal_type, r.source, r.severity, r.namespace,
       r.resource_kind, r.resource_name, r.environment, r.priority, r.labels, r.annotations, r.phase,
       r.first_seen, r.last_seen, r.occurrence_count, r.resolved_at, r.is_storm, r.storm_type,
       r.storm_alert_count, r.affected_resources, r.affected_overflow, r.storm_window_start,
       r.storm_window_end, r.storm_request_id, r.created_at, r.updated_at,
       o.action, o.succeeded, o.detail, o.recorded_at
FROM {REQUESTS} r LEFT JOIN {OUTCOMES} o ON o.request_id = r.id
"""

_OPEN = open_request("r")

# The per-group counts shared by the namespace and severity breakdowns.
_GROUP_COUNTS = f"""
count(*) AS incidents,
count(*) FILTER (WHERE {_OPEN}) AS open,
count(o.request_id) FILTER (WHERE o.succeeded) AS succeeded,
count(o.request_id) FILTER (WHERE NOT o.succeeded) AS failed
"""


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


class _Where:
    """Builds a WHERE clause with numbered parameters."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, template: str, value: Any) -> None:
        if value is not None:
            self.args.append(value)
            self.conditions.append(template.format(f"${len(self.args)}"))

    def sql(self, joiner: str = "WHERE") -> str:
        return f"{joiner} " + " AND ".join(self.conditions) if self.conditions else ""

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _common(w: _Where, q: Any) -> None:
    w.add("r.namespace = {}", getattr(q, "namespace", None))
    w.add("r.severity = {}", getattr(q, "severity", None))
    w.add("r.signal_name = {}", getattr(q, "alertname", None))
    w.add("r.first_seen >= {}", getattr(q, "since", None))
    w.add("r.first_seen < {}", getattr(q, "until", None))


def incident_json(row: asyncpg.Record) -> dict[str, Any]:
    storm = None
    if row["is_storm"]:
        storm = {
            "type": row["storm_type"],
            "alert_count": row["storm_alert_count"],
            "affected_resources": row["affected_resources"],
            "affected_overflow": row["affected_overflow"],
            "window_start": row["storm_window_start"],
            "window_end": row["storm_window_end"],
        }
    outcome = None
    if row["action"] is not None:
        outcome = {
            "action": row["action"],
            "succeeded": row["succeeded"],
            "detail": row["detail"],
            "recorded_at": row["recorded_at"],
        }
    return {
        "id": row["id"],
        "fingerprint": row["fingerprint"],
        "alertname": row["signal_name"],
        "signal_type": row["signal_type"],
        "source": row["source"],
        "severity": row["severity"],
        "namespace": row["namespace"],
        "resource": {"kind": row["resource_kind"], "name": row["resource_name"]},
        "environment": row["environment"],
        "priority": row["priority"],
        # jsonb arrives as JSON text: embed it as is.
        "labels": orjson.Fragment(row["labels"]),
        "annotations": orjson.Fragment(row["annotations"]),
        "phase": row["phase"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "occurrence_count": row["occurrence_count"],
        "resolved_at": row["resolved_at"],
        "storm": storm,
        "storm_request_id": row["storm_request_id"],  # the storm this request's alert came before
        "outcome": outcome,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _rate(succeeded: int, failed: int) -> float | None:
    total = succeeded + failed
    return round(succeeded / total, 6) if total else None


async def list_incidents(conn: Conn, q: IncidentQuery) -> bytes:
    w = _Where()
    _common(w, q)
    w.add("r.fingerprint = {}", q.fingerprint)
    w.add("r.phase = {}", q.phase)
    where = w.sql()
    total = await conn.fetchval(f"SELECT count(*) FROM {REQUESTS} r {where}", *w.args)
    page = f"ORDER BY r.first_seen DESC, r.id DESC LIMIT {w.param(q.limit)} OFFSET {w.param(q.offset)}"
    rows = await conn.fetch(f"{_SELECT_INCIDENT} {where} {page}", *w.args)
    return dumps(
        {"incidents": [incident_json(r) for r in rows], "total": total, "limit": q.limit, "offset": q.offset}
    )


async def get_incident(conn: Conn, incident_id: int) -> bytes | None:
    row = await conn.fetchrow(f"{_SELECT_INCIDENT} WHERE r.id = $1", incident_id)
    return None if row is None else dumps(incident_json(row))


async def success_rate(conn: Conn, q: SuccessRateQuery) -> bytes:
    w = _Where()
    _common(w, q)
    w.add("o.action = {}", q.action)
    rows = await conn.fetch(
        f"""SELECT o.action, count(*) FILTER (WHERE o.succeeded) AS succeeded,
                   count(*) FILTER (WHERE NOT o.succeeded) AS failed
            FROM {OUTCOMES} o JOIN {REQUESTS} r ON r.id = o.request_id
            {w.sql()} GROUP BY o.action""",
        *w.args,
    )
    by_action = sorted(
        (
            {
                "action": r["action"],
                "total": r["succeeded"] + r["failed"],
                "succeeded": r["succeeded"],
                "failed": r["failed"],
                "success_rate": _rate(r["succeeded"], r["failed"]),
            }
            for r in rows
        ),
        key=lambda a: (-a["total"], a["action"]),
    )
    succeeded = sum(a["succeeded"] for a in by_action)
    failed = sum(a["failed"] for a in by_action)
    return dumps(
        {
            "total": succeeded + failed,
            "succeeded": succeeded,
            "failed": failed,
            "success_rate": _rate(succeeded, failed),
            "by_action": by_action,
            "filters": q.model_dump(exclude_none=True),
        }
    )


async def _breakdown(conn: Conn, column: str, q: NamespacesQuery | SeverityQuery) -> list[Any]:
    w = _Where()
    _common(w, q)
    rows = await conn.fetch(
        f"""SELECT r.{column} AS name, {_GROUP_COUNTS}
            FROM {REQUESTS} r LEFT JOIN {OUTCOMES} o ON o.request_id = r.id
            {w.sql()} GROUP BY r.{column} ORDER BY incidents DESC, name""",
        *w.args,
    )
    return [
        {
            column: r["name"],
            "incidents": r["incidents"],
            "open": r["open"],
            "succeeded": r["succeeded"],
            "failed": r["failed"],
            "success_rate": _rate(r["succeeded"], r["failed"]),
        }
        for r in rows
    ]


async def by_namespace(conn: Conn, q: NamespacesQuery) -> bytes:
    rows = await _breakdown(conn, "namespace", q)
    return dumps({"namespaces": rows, "filters": q.model_dump(exclude_none=True)})


async def by_severity(conn: Conn, q: SeverityQuery) -> bytes:
    rows = await _breakdown(conn, "severity", q)
    return dumps({"severities": rows, "filters": q.model_dump(exclude_none=True)})


async def trend(conn: Conn, q: TrendQuery) -> bytes:
    w = _Where()
    first_day = f"(now() AT TIME ZONE 'UTC')::date - ({w.param(q.days)}::int - 1)"
    w.conditions.append(f"r.first_seen >= ({first_day}) AT TIME ZONE 'UTC'")
    _common(w, q)
    # Every day of the window appears, with zeros when nothing happened.
    rows = await conn.fetch(
        f"""WITH days AS (
                SELECT generate_series({first_day}, (now() AT TIME ZONE 'UTC')::date, interval '1 day')::date
                       AS day),
            hits AS (
                SELECT (r.first_seen AT TIME ZONE 'UTC')::date AS day, o.succeeded
                FROM {REQUESTS} r LEFT JOIN {OUTCOMES} o ON o.request_id = r.id
                {w.sql()})
            SELECT days.day, count(hits.day) AS incidents,
                   count(*) FILTER (WHERE hits.succeeded) AS succeeded,
                   count(*) FILTER (WHERE NOT hits.succeeded) AS failed
            FROM days LEFT JOIN hits USING (day) GROUP BY days.day ORDER BY days.day""",
        *w.args,
    )
    points = [
        {"date": r["day"], "incidents": r["incidents"], "succeeded": r["succeeded"], "failed": r["failed"]}
        for r in rows
    ]
    return dumps({"days": q.days, "points": points, "filters": q.model_dump(exclude_none=True)})


@dataclass(frozen=True)
class OutcomeResult:
    """``status``: recorded | unchanged (same outcome again) | conflict | not_found."""

    status: str
    namespace: str | None = None
    existing: dict[str, Any] | None = None


async def record_outcome(conn: Conn, incident_id: int, body: OutcomeBody) -> OutcomeResult:
    async with conn.transaction():
        # The row lock serialises concurrent outcomes for one incident.
        namespace = await conn.fetchval(
            f"SELECT namespace FROM {REQUESTS} WHERE id = $1 FOR UPDATE", incident_id
        )
        if namespace is None:
            return OutcomeResult("not_found")
        existing = await conn.fetchrow(
            f"SELECT action, succeeded, detail FROM {OUTCOMES} WHERE request_id = $1", incident_id
        )
        if existing is not None:
            same = (existing["action"], existing["succeeded"], existing["detail"]) == (
                body.action,
                body.succeeded,
                body.detail,
            )
            return OutcomeResult("unchanged" if same else "conflict", namespace, dict(existing))
        await conn.execute(
            f"INSERT INTO {OUTCOMES} (request_id, action, succeeded, detail) VALUES ($1, $2, $3, $4)",
            incident_id,
            body.action,
            body.succeeded,
            body.detail,
        )
        await conn.execute(
            f"UPDATE {REQUESTS} SET phase = $2, updated_at = now() WHERE id = $1",
            incident_id,
            "completed" if body.succeeded else "failed",
        )
    return OutcomeResult("recorded", namespace)
