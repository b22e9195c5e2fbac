"""Whether a group commit whose connection failed during or right after COMMIT was committed.

Each group commit records a token of its own (a row of ``applied_count_batches``) with its transaction id
and the identity of the server running it. When the outcome is unknown, the token decides on any node: a
committed transaction's row is visible on every node that holds its commit. Its absence decides only where
it is final: on the same server once ``txid_status`` says the transaction is no longer running, or on a
new primary (a failover: the old primary's divergent history is rewound when it rejoins). Transaction ids
alone are not enough on another node: a promoted standby that never saw the id hands it out again.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import asyncpg
from asyncpg.connect_utils import SessionAttribute
from asyncpg.pool import PoolConnectionProxy

from kubernaut.store.schema import APPLIED_COUNT_BATCHES

_MARK = f"""
WITH token AS (INSERT INTO {APPLIED_COUNT_BATCHES} (batch_id) VALUES ($1) RETURNING batch_id)
SELECT txid_current() AS xid, pg_postmaster_start_time()::text AS started,
       coalesce(inet_server_port(), 0) AS port
FROM token
"""
_SERVER = """
SELECT pg_postmaster_start_time()::text AS started, coalesce(inet_server_port(), 0) AS port,
       pg_is_in_recovery() AS standby
"""
_STATUS = "SELECT txid_status($1)"
_TOKEN_SEEN = f"SELECT EXISTS (SELECT 1 FROM {APPLIED_COUNT_BATCHES} WHERE batch_id = $1)"
TOKEN_PREFIX = "commit:"
_POLL_S = 0.1


class Verdict(Enum):
    """Whether a group commit whose answer was lost did commit."""

    COMMITTED = "committed"
    NOT_COMMITTED = "not committed"
    UNKNOWN = "unknown"  # nothing decided it within the budget: refuse, as for a failure


@dataclass(frozen=True, slots=True)
class CommitMark:
    """The token, transaction id and server of a group commit: what decides its fate if its answer is lost."""

    token: str
    xid: int
    server: tuple[str, int]  # (postmaster start time, port): the server that ran the transaction


async def take_mark(conn: PoolConnectionProxy[Any]) -> CommitMark:
    """Record the open transaction's token (first statement of a group commit)."""
    token = TOKEN_PREFIX + os.urandom(12).hex()
    row = await conn.fetchrow(_MARK, token)
    assert row is not None
    return CommitMark(token, int(row["xid"]), (row["started"], int(row["port"])))


async def _status(conn: asyncpg.Connection | PoolConnectionProxy[Any], xid: int) -> str | None:
    try:
        return await conn.fetchval(_STATUS, xid)  # type: ignore[no-any-return]
    except asyncpg.InvalidParameterValueError:  # "transaction ID ... is in the future": never seen here
        return "future"


async def _ask_primary(pool: asyncpg.Pool, mark: CommitMark, wait_s: float) -> Verdict:
    async with pool.acquire(timeout=wait_s) as conn:
        server = await conn.fetchrow(_SERVER)
        assert server is not None
        if (server["started"], int(server["port"])) == mark.server:
            # The status first, then the token in a later snapshot: a commit between them is seen.
            status = await _status(conn, mark.xid)
            if status == "in progress":
                return Verdict.UNKNOWN
            if await conn.fetchval(_TOKEN_SEEN, mark.token):
                return Verdict.COMMITTED
            # "committed" without the row: committed locally, still waiting for the synchronous standby.
            return Verdict.UNKNOWN if status == "committed" else Verdict.NOT_COMMITTED
        if await conn.fetchval(_TOKEN_SEEN, mark.token):
            return Verdict.COMMITTED
        return Verdict.UNKNOWN if server["standby"] else Verdict.NOT_COMMITTED


async def _seen_on_standby(dsn: str, mark: CommitMark, wait_s: float) -> bool:
    """A standby that replayed the commit holds it: it survives whichever node is promoted."""
    conn = await asyncpg.connect(dsn, target_session_attrs=SessionAttribute.standby, timeout=wait_s)
    try:
        return bool(await conn.fetchval(_TOKEN_SEEN, mark.token, timeout=wait_s))
    finally:
        await conn.close(timeout=wait_s)


_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # no host matches the target (no primary/standby now)
)


async def resolve(pool: asyncpg.Pool, dsn: str, mark: CommitMark, budget_s: float) -> Verdict:
    """Ask the primary (whichever node it is now) and any standby until one decides or ``budget_s`` ends."""
    deadline = time.monotonic() + budget_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            verdict = await asyncio.wait_for(_ask_primary(pool, mark, left), left)
        except _ERRORS:
            verdict = Verdict.UNKNOWN
        if verdict is not Verdict.UNKNOWN:
            return verdict
        if (left := deadline - time.monotonic()) <= 0:
            break
        try:
            if await asyncio.wait_for(_seen_on_standby(dsn, mark, left), left):
                return Verdict.COMMITTED
        except _ERRORS:
            pass
        await asyncio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
    return Verdict.UNKNOWN
