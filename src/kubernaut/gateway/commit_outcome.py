"""Whether a group commit whose connection failed during or right after COMMIT was committed.

Each group commit opens with a token of its own (a row of ``applied_count_batches``) and holds an
advisory lock of its own, both taken with its ``BEGIN`` in one round trip. When the outcome is unknown,
the token decides on any node: a committed transaction's row is visible on every node that holds its
commit. Its absence decides only where it is final: on a primary where the lock can be taken. On the
server that ran the transaction the lock is free only once the transaction has ended, after its commit
became visible (PostgreSQL releases a transaction's locks after that, and after any wait for a
synchronous standby); on a new primary after a failover it is free at once, and the absence is final
there too (the old primary's divergent history is rewound when it rejoins).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from enum import Enum

import asyncpg
from asyncpg.connect_utils import SessionAttribute

from kubernaut.store.schema import APPLIED_COUNT_BATCHES

_STANDBY = "SELECT pg_is_in_recovery()"
# In autocommit: the lock is taken and let go at once; taken means the transaction holds it no more.
_ENDED = "SELECT pg_try_advisory_xact_lock($1)"
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
    """The token and lock of a group commit: what decides its fate if its answer is lost."""

    token: str
    lock: int  # the advisory lock's key, random like the token

    @classmethod
    def new(cls) -> CommitMark:
        random = os.urandom(12)
        return cls(TOKEN_PREFIX + random.hex(), int.from_bytes(random[:8], "big", signed=True))

    def statements(self) -> str:
        """What the transaction runs first (simple query: literals, no parameters; both are ours)."""
        return (
            f"SELECT pg_advisory_xact_lock({self.lock});"
            f" INSERT INTO {APPLIED_COUNT_BATCHES} (batch_id) VALUES ('{self.token}')"
        )

    def begin(self) -> str:
        """``BEGIN`` and :meth:`statements` in one round trip: how a group commit opens."""
        return "BEGIN; " + self.statements()


async def _ask_primary(pool: asyncpg.Pool, mark: CommitMark, wait_s: float) -> Verdict:
    async with pool.acquire(timeout=wait_s) as conn:
        if await conn.fetchval(_STANDBY):  # the pool reached a standby (a switchover under way)
            return Verdict.COMMITTED if await conn.fetchval(_TOKEN_SEEN, mark.token) else Verdict.UNKNOWN
        # The lock first, then the token in a later snapshot: a commit that ended before is seen.
        ended = await conn.fetchval(_ENDED, mark.lock)
        if await conn.fetchval(_TOKEN_SEEN, mark.token):
            return Verdict.COMMITTED
        return Verdict.NOT_COMMITTED if ended else Verdict.UNKNOWN


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
