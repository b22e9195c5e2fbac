"""After a drill: what PostgreSQL holds for every alert the gateway acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from kubernaut.store.schema import OPEN, REQUESTS, STORM_MEMBERS
from kubernaut_tools.drill.load import Exchange


@dataclass(frozen=True)
class Verification:
    accepted_alerts: int
    lost: int
    duplicate_open_requests: int
    counted_occurrences: int

    @property
    def count_drift(self) -> int:
        return self.accepted_alerts - self.counted_occurrences


async def untraced(conn: asyncpg.Connection, fingerprints: Sequence[str]) -> int:
    """How many of ``fingerprints`` (distinct) have neither a request nor a storm membership."""
    traced = await conn.fetchval(
        f"""
        SELECT count(*) FROM unnest($1::text[]) AS f(fp)
        WHERE EXISTS (SELECT 1 FROM {REQUESTS} r WHERE r.fingerprint = f.fp)
           OR EXISTS (SELECT 1 FROM {STORM_MEMBERS} m WHERE m.fingerprint = f.fp)
        """,
        list(fingerprints),
    )
    return len(fingerprints) - int(traced)


async def duplicate_open_requests(conn: asyncpg.Connection, namespace: str) -> int:
    """Fingerprints of ``namespace`` with more than one open request (invariant 2 says none)."""
    duplicates = await conn.fetchval(
        f"""
        SELECT count(*) FROM (
            SELECT fingerprint FROM {REQUESTS}
            WHERE namespace = $1 AND {OPEN} GROUP BY fingerprint HAVING count(*) > 1
        ) d
        """,
        namespace,
    )
    return int(duplicates)


async def _check(conn: asyncpg.Connection, namespace: str, exchanges: list[Exchange]) -> Verification:
    accepted = [fp for ex in exchanges if ex.accepted for fp, outcome in ex.outcomes if outcome != "resolved"]
    fingerprints = sorted(set(accepted))
    counted = await conn.fetchval(
        f"""
        SELECT coalesce(sum(CASE WHEN is_storm THEN storm_alert_count ELSE occurrence_count END), 0)
        FROM {REQUESTS} WHERE namespace = $1
        """,
        namespace,
    )
    return Verification(
        len(accepted),
        await untraced(conn, fingerprints),
        await duplicate_open_requests(conn, namespace),
        int(counted),
    )


async def verify(
    dsn: str, namespace: str, exchanges: list[Exchange], *, settle_s: float = 25.0, poll_s: float = 0.5
) -> Verification:
    """Check until the counts are exact or ``settle_s`` has passed: a gateway takes no count from Redis for
    15 s after a failed call (redis_state._DOUBT_S), then flushes every second."""
    conn = await asyncpg.connect(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_s
        last = await _check(conn, namespace, exchanges)
        while loop.time() < deadline and last.count_drift != 0:
            await asyncio.sleep(poll_s)
            last = await _check(conn, namespace, exchanges)
        return last
    finally:
        await conn.close()
