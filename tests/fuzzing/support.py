"""Fuzzing support: the example budget (bounded and derandomized in the suite;
``KUBERNAUT_FUZZ_EXAMPLES=N`` for a long, random run of N examples per test), a PostgreSQL connection
for the sync hypothesis tests."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
from hypothesis import HealthCheck, settings

LONG_RUN = int(os.environ.get("KUBERNAUT_FUZZ_EXAMPLES", "0"))

fuzz = settings(
    max_examples=LONG_RUN or 60,
    derandomize=not LONG_RUN,
    suppress_health_check=list(HealthCheck),
)


class Db:
    """A PostgreSQL connection for the sync hypothesis tests, on a loop of its own."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(dsn))

    def val(self, sql: str, *args: Any) -> Any:
        return self._loop.run_until_complete(self._conn.fetchval(sql, *args))

    def row(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self._loop.run_until_complete(self._conn.fetchrow(sql, *args))
        return dict(row) if row is not None else None

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()
