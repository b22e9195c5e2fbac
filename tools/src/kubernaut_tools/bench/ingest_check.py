"""After a gateway row: does PostgreSQL hold what the gateway acknowledged (counts, one open request each)?"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from kubernaut.store.schema import OPEN, REQUESTS

# A storm request's occurrence_count takes every alert it aggregated and their repeats;
# storm_alert_count only its distinct members.
_COUNTED = f"SELECT coalesce(sum(occurrence_count), 0) FROM {REQUESTS}"
_DUPLICATE_OPEN = f"""
SELECT count(*) FROM (
    SELECT fingerprint FROM {REQUESTS}
    WHERE {OPEN}
    GROUP BY fingerprint HAVING count(*) > 1
) d
"""


@dataclass(frozen=True)
class IngestCheck:
    acknowledged: int  # alerts in 2xx answers (warm-up and load)
    in_flight: int  # alerts of requests wrk may have sent but not seen answered when it stopped
    counted: int  # occurrences PostgreSQL holds once the count flushes settled
    duplicate_open: int  # fingerprints with more than one open request

    @property
    def ok(self) -> bool:
        return self.duplicate_open == 0 and 0 <= self.counted - self.acknowledged <= self.in_flight

    def describe(self) -> str:
        verdict = "exact" if self.ok else "WRONG"
        return (
            f"{verdict}: {self.acknowledged:,} alerts acknowledged, {self.counted:,} counted "
            f"(allowed excess: {self.in_flight:,} in flight at wrk's stop), "
            f"{self.duplicate_open} fingerprint(s) with two open requests"
        )


async def _read(conn: asyncpg.Connection) -> tuple[int, int]:
    return int(await conn.fetchval(_COUNTED)), int(await conn.fetchval(_DUPLICATE_OPEN))


async def check(dsn: str, acknowledged: int, in_flight: int, *, settle_s: float = 30.0) -> IngestCheck:
    """Read until the duplicate counts stop moving (two equal readings two flush intervals apart)
    with at least the acknowledged alerts counted, or ``settle_s`` passed."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + settle_s
        last = await _read(conn)
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            current = await _read(conn)
            if current == last and current[0] >= acknowledged:
                break
            last = current
        return IngestCheck(acknowledged, in_flight, last[0], last[1])
    finally:
        await conn.close()
