"""Reads from a standby (``postgres.read_dsn``) without breaking the freshness promise.

Every invalidation first raises a *fence*: the primary's WAL position after the change
(``pg_current_wal_lsn()``, taken once the change is committed: PostgreSQL announces a change only after
its commit, and an outcome is fenced after its own commit). A cache refill may come from a standby only
once that standby has replayed the fence; a standby behind it for longer than a short wait, or an
unanswered fence (the primary away), sends the refill to the primary. A promoted standby (no longer in
recovery) holds every commit the old primary acknowledged, because replication is synchronous.

When the primary does not answer for the fence (it is failing over), the fence becomes "everything this
standby has received": PostgreSQL announces a change only after the synchronous standby has flushed it,
so a synchronous standby that has replayed all it received holds the change. (An asynchronous standby in
``read_dsn`` then gives only the next invalidation's freshness: name synchronous standbys there.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from kubernaut.contextapi.queries import STORE_ERRORS, Conn

log = structlog.get_logger(__name__)

T = TypeVar("T")

UNKNOWN = "unknown"  # the fence when the primary did not say (see above)
_CAUGHT_UP = "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
_CAUGHT_UP_RECEIVED = (
    "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"
)
_WAIT_STEPS = 5
_WAIT_STEP_S = 0.005


def lsn_int(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class ReadRouter:
    """Sends a cache refill to the standby once it has replayed the last fence, else to the primary."""

    def __init__(self, primary: asyncpg.Pool, standby: asyncpg.Pool | None, *, timeout_s: float) -> None:
        self.primary = primary
        self.standby = standby
        self._timeout_s = timeout_s
        self._fence = "0/0"
        self.standby_reads = 0
        self.primary_reads = 0

    @property
    def fence(self) -> str:
        return self._fence

    def _raise(self, lsn: str) -> None:
        if self._fence == UNKNOWN or lsn_int(lsn) > lsn_int(self._fence):
            self._fence = lsn

    async def fence_after_change(self, conn: Conn | None = None) -> None:
        """Before an invalidation: the primary's WAL position now (``conn`` on the primary, or the pool)."""
        if self.standby is None:
            return
        try:
            if conn is not None:
                lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
            else:
                lsn = await self.primary.fetchval(
                    "SELECT pg_current_wal_lsn()::text", timeout=self._timeout_s
                )
        except STORE_ERRORS as err:
            log.warning("no WAL position from the primary; refills skip the standby", error=repr(err))
            self._fence = UNKNOWN
            return
        self._raise(str(lsn))

    async def _caught_up(self, conn: Conn, fence: str) -> bool:
        for step in range(_WAIT_STEPS):
            caught_up = (
                await conn.fetchval(_CAUGHT_UP_RECEIVED)
                if fence == UNKNOWN
                else await conn.fetchval(_CAUGHT_UP, fence)
            )
            if caught_up:
                return True
            if step + 1 < _WAIT_STEPS:
                await asyncio.sleep(_WAIT_STEP_S)
        return False

    async def read(self, run: Callable[[Conn], Awaitable[T]]) -> T:
        """Run a read on a standby that has replayed the fence, else on the primary."""
        if self.standby is not None:
            fence = self._fence
            try:
                async with self.standby.acquire() as conn:
                    if await self._caught_up(conn, fence):
                        self.standby_reads += 1
                        return await run(conn)
            except STORE_ERRORS as err:
                if not _is_connection_error(err):
                    raise
                log.warning("standby read failed; reading from the primary", error=repr(err))
                await self.standby.expire_connections()
        self.primary_reads += 1
        async with self.primary.acquire() as conn:
            return await run(conn)

    async def write(self, run: Callable[[Conn], Awaitable[T]]) -> T:
        """Run on the primary, then fence the change on the same connection (after its commit)."""
        async with self.primary.acquire() as conn:
            result = await run(conn)
            await self.fence_after_change(conn)
            return result

    def stats(self) -> dict[str, Any]:
        return {
            "fence": self._fence,
            "standby_reads": self.standby_reads,
            "primary_reads": self.primary_reads,
        }


def _is_connection_error(err: BaseException) -> bool:
    return not isinstance(err, asyncpg.PostgresError) or isinstance(
        err,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
            asyncpg.exceptions.ReadOnlySQLTransactionError,
            # a query cancelled by a recovery conflict on the standby
            asyncpg.exceptions.TransactionRollbackError,
        ),
    )
