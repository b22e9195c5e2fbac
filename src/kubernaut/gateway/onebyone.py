"""One webhook's writes, statement by statement: the reference the set-based group commit
(gateway/setcommit.py) must match, and its fallback when a statement of a group fails."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from kubernaut.gateway.writes import LAST, NewRequest, StormJoin, Webhook, Written
from kubernaut.store.schema import OPEN, REQUESTS, STORM_MEMBERS, add_resources

# A pooled connection (the gateway) or a plain one (tests).
Conn: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[Any]"

# Opens or counts each fingerprint's request in the period Redis ordered it in, row after row
# (migration 070); the gateway's set-based writer sends the same statement.
FIRE = """
SELECT k.id, k.fingerprint, k.inserted
FROM kubernaut_fire($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
                    $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::bigint[],
                    $18::bigint[]) WITH ORDINALITY AS k(id, fingerprint, inserted, n)
ORDER BY k.n
"""

_UPSERT_STORM = f"""
INSERT INTO {REQUESTS} AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, first_seen, last_seen, occurrence_count,
    is_storm, storm_type, storm_window_start, storm_window_end, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $17::timestamptz,
        greatest($17::timestamptz, $13), $14, true, $15, $16, $13, $13)
ON CONFLICT (fingerprint) WHERE {OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen),
              storm_window_end = greatest(r.storm_window_end, EXCLUDED.storm_window_end),
              updated_at = now()
RETURNING r.id, (r.xmax = 0) AS inserted
"""

# Members already taken in (a repeat that reached PostgreSQL) are skipped, one a Redis join wrote taken
# over (see migration 090); resources beyond the cap are only counted.
_ADD_MEMBERS = f"""
WITH written AS (
    INSERT INTO {STORM_MEMBERS} AS sm (request_id, fingerprint, resource, first_seen, received_at)
    SELECT $1, m.f, m.res, m.fs, $4 FROM unnest($2::text[], $3::text[], $6::timestamptz[]) AS m(f, res, fs)
    ON CONFLICT (request_id, fingerprint) DO UPDATE SET joined_by = NULL WHERE sm.joined_by IS NOT NULL
    RETURNING fingerprint, resource, (xmax = 0) AS inserted
), added AS (
    SELECT fingerprint, resource FROM written WHERE inserted
), named AS (
    SELECT ARRAY(SELECT resource FROM added WHERE resource <> '') AS resources
)
UPDATE {REQUESTS} r
SET storm_alert_count = r.storm_alert_count + (SELECT count(*) FROM added),
    {add_resources("r", "named.resources", "$5")},
    updated_at = now()
FROM named
WHERE r.id = $1
RETURNING ARRAY(SELECT fingerprint FROM added)
"""

# Closes the requests opened before each resolution in Redis order, recording the resolution
# (migration 070); an alert's endsAt before the request's first_seen closes it at first_seen.
RESOLVE = """
SELECT k.id, k.fingerprint
FROM kubernaut_resolve($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[])
     AS k(id, fingerprint)
"""

# Members of open storms resolve; a storm whose members have all resolved closes (at its last
# member's resolution). A member of two open storms answers with the one it joined first (the order
# is part of the result, so it must not be the plan's).
RESOLVE_MEMBERS = f"""
WITH d AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS d(f, t)),
resolved AS (
    UPDATE {STORM_MEMBERS} m SET resolved_at = greatest(m.first_seen, d.t)
    FROM d, {REQUESTS} r
    WHERE m.fingerprint = d.f AND m.resolved_at IS NULL AND r.id = m.request_id AND r.is_storm
      AND r.{OPEN}
    RETURNING m.request_id, m.fingerprint, m.resolved_at, m.received_at, r.fingerprint AS storm
)
SELECT request_id, fingerprint, resolved_at FROM resolved ORDER BY received_at, storm
"""

_CLOSE_STORMS = f"""
UPDATE {REQUESTS} r
SET resolved_at = greatest(r.first_seen, (SELECT max(m.resolved_at) FROM {STORM_MEMBERS} m
                                          WHERE m.request_id = r.id)),
    resolved_received_at = $2, updated_at = now()
WHERE r.id = ANY($1::bigint[]) AND r.{OPEN}
  AND NOT EXISTS (SELECT 1 FROM {STORM_MEMBERS} m WHERE m.request_id = r.id AND m.resolved_at IS NULL)
"""

# A member firing again is unresolved again (its storm stays open).
_REOPEN_MEMBERS = f"""
UPDATE {STORM_MEMBERS} SET resolved_at = NULL
WHERE request_id = $1 AND fingerprint = ANY($2::text[]) AND resolved_at IS NOT NULL
"""

# The storm's group's requests opened in the detection window before the storm: linked to it.
LINK_EARLIER = f"""
UPDATE {REQUESTS} r SET storm_request_id = $1, updated_at = now()
WHERE r.signal_name = $2 AND r.namespace = $3 AND NOT r.is_storm AND r.storm_request_id IS NULL
  AND r.received_at >= $4
"""

# A webhook's duplicates of known requests, counted in its own transaction.
_COUNT_DUPLICATES = f"""
UPDATE {REQUESTS} r
SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, $3), updated_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
WHERE r.id = d.id
"""


def json_text(value: object) -> str:
    return orjson.dumps(value).decode()


async def apply_webhook(conn: Conn, work: Webhook, max_affected: int) -> list[Written]:
    """One webhook's statements, phase after phase. Within a phase rows are touched in fingerprint
    order (fewer deadlocks between concurrent transactions)."""
    result = []
    for phase in work.phases:
        written = Written({}, {}, {})
        if phase.singles:
            singles = list(phase.singles.values())
            await _upsert_singles(conn, work.signal_type, work.source, work.now, singles, written)
        for storm in sorted(phase.storms.values(), key=lambda s: s.fingerprint):
            await _join_storm(conn, work.signal_type, work.source, work.now, storm, written, max_affected)
        if phase.resolves:
            fps = sorted(phase.resolves)
            times = [phase.resolves[f] or work.now for f in fps]
            seqs = [phase.resolve_seqs.get(f, LAST) for f in fps]
            rows = await conn.fetch(RESOLVE, fps, times, [work.now] * len(fps), seqs)
            written.resolved = {r["fingerprint"]: r["id"] for r in rows}
            members = await conn.fetch(RESOLVE_MEMBERS, fps, times)
            for m in members:
                written.resolved.setdefault(m["fingerprint"], m["request_id"])
            if members:
                storms = sorted({m["request_id"] for m in members})
                await conn.execute(_CLOSE_STORMS, storms, work.now)
        result.append(written)
    if work.counts:
        ids = sorted(work.counts)
        await conn.execute(_COUNT_DUPLICATES, ids, [work.counts[i] for i in ids], work.now)
    return result


async def _upsert_singles(
    conn: Conn,
    signal_type: str,
    source: str,
    now: datetime,
    singles: Sequence[NewRequest],
    written: Written,
) -> None:
    rows = sorted(singles, key=lambda r: r.signal.fingerprint)
    result = await conn.fetch(
        FIRE,
        [r.signal.fingerprint for r in rows],
        [r.signal.name for r in rows],
        [signal_type] * len(rows),
        [source] * len(rows),
        [r.signal.severity for r in rows],
        [r.signal.namespace for r in rows],
        [r.signal.resource_kind for r in rows],
        [r.signal.resource_name for r in rows],
        [r.environment for r in rows],
        [r.priority for r in rows],
        [json_text(r.signal.labels) for r in rows],
        [json_text(r.signal.annotations) for r in rows],
        [r.occurrences for r in rows],
        [r.first_seen or now for r in rows],
        [max(r.first_seen or now, now) for r in rows],
        [now] * len(rows),
        [r.period for r in rows],
        [r.seq for r in rows],
    )
    written.singles = {r["fingerprint"]: (r["id"], r["inserted"]) for r in result}


async def _join_storm(
    conn: Conn,
    signal_type: str,
    source: str,
    now: datetime,
    storm: StormJoin,
    written: Written,
    max_affected: int,
) -> None:
    first = storm.first
    row = await conn.fetchrow(
        _UPSERT_STORM,
        storm.fingerprint,
        first.name,
        signal_type,
        source,
        first.severity,
        first.namespace,
        first.resource_kind,
        first.resource_name,
        storm.environment,
        storm.priority,
        json_text(first.labels),
        json_text(first.annotations),
        now,
        storm.occurrences,
        storm.storm_type,
        storm.window_start,
        storm.first_seen.get(first.fingerprint, now),
    )
    assert row is not None
    fps = sorted(storm.members)
    added = await conn.fetchval(
        _ADD_MEMBERS,
        row["id"],
        fps,
        [storm.members[f].resource for f in fps],
        now,
        max_affected,
        [storm.first_seen.get(f, now) for f in fps],
    )
    added = set(added or ())
    if len(added) < len(fps):
        await conn.execute(_REOPEN_MEMBERS, row["id"], [f for f in fps if f not in added])
    if row["inserted"]:
        await conn.execute(
            LINK_EARLIER, row["id"], first.name, first.namespace, storm.window_start - storm.lookback
        )
    written.storms[storm.fingerprint] = (row["id"], row["inserted"], added)
