"""What the page shows, read from PostgreSQL (the source of truth; the page is not cached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from kubernaut.contextapi import queries
from kubernaut.contextapi.params import Name, Namespace, QueryModel, SuccessRateQuery
from kubernaut.store.schema import OUTCOMES, REQUESTS, STORM_MEMBERS, open_request

OPEN = open_request("r")


class UiFilters(QueryModel):
    """The operator page's filters, validated like an API query."""

    route = "ui"
    namespace: Namespace | None = None
    severity: Name | None = None
    alertname: Name | None = None


@dataclass
class View:
    """Everything the operator's page shows, read in one go from PostgreSQL."""

    filters: UiFilters
    open_requests: list[dict[str, Any]]
    storms: list[dict[str, Any]]
    resolutions: list[dict[str, Any]]
    success: dict[str, Any]
    postgres: dict[str, Any]


async def load(conn: queries.Conn, f: UiFilters) -> View:
    w = queries._Where()
    w.conditions.append(OPEN)
    w.add("r.namespace = {}", f.namespace)
    w.add("r.severity = {}", f.severity)
    w.add("r.signal_name = {}", f.alertname)
    open_rows = await conn.fetch(
        f"""SELECT r.id, r.signal_name, r.severity, r.namespace, r.resource_kind, r.resource_name,
                   r.priority, r.environment, r.occurrence_count, r.first_seen, r.last_seen, r.is_storm
            FROM {REQUESTS} r {w.sql()} ORDER BY r.first_seen DESC, r.id DESC LIMIT 100""",
        *w.args,
    )
    storms = [
        dict(r)
        for r in await conn.fetch(
            f"""SELECT r.id, r.signal_name, r.namespace, r.storm_type, r.storm_alert_count,
                      r.affected_resources, r.affected_overflow, r.first_seen, r.resolved_at
               FROM {REQUESTS} r WHERE r.is_storm ORDER BY r.first_seen DESC, r.id DESC LIMIT 10"""
        )
    ]
    members = await conn.fetch(
        f"""SELECT request_id, fingerprint, resource, first_seen FROM {STORM_MEMBERS}
           WHERE request_id = ANY($1::bigint[]) ORDER BY first_seen, resource""",
        [s["id"] for s in storms],
    )
    for s in storms:
        s["members"] = [dict(m) for m in members if m["request_id"] == s["id"]]
    resolutions = await conn.fetch(
        f"""SELECT r.id, r.signal_name, r.namespace, r.phase, r.resolved_at, o.action, o.succeeded,
                  o.recorded_at, greatest(r.resolved_at, o.recorded_at) AS at
           FROM {REQUESTS} r LEFT JOIN {OUTCOMES} o ON o.request_id = r.id
           WHERE r.resolved_at IS NOT NULL OR o.request_id IS NOT NULL
           ORDER BY at DESC NULLS LAST, r.id DESC LIMIT 20"""
    )
    success = orjson.loads(await queries.success_rate(conn, SuccessRateQuery()))
    standby = await conn.fetchval("SELECT pg_is_in_recovery()")
    version = await conn.fetchval("SELECT current_setting('server_version')")
    return View(
        filters=f,
        open_requests=[dict(r) for r in open_rows],
        storms=storms,
        resolutions=[dict(r) for r in resolutions],
        success=success,
        postgres={"role": "standby" if standby else "primary", "version": version},
    )
