"""The gateway's writes to PostgreSQL: new requests, storm requests and their members, resolutions,
and batched duplicate counts. Every webhook's writes commit together or not at all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog

from kubernaut.config import PostgresSettings
from kubernaut.gateway.commit_outcome import TOKEN_PREFIX, CommitMark, Verdict, resolve
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.onebyone import Conn, apply_webhook
from kubernaut.gateway.setcommit import apply_group
from kubernaut.gateway.writes import NewRequest, Phase, StormJoin, Webhook, Written
from kubernaut.store.schema import APPLIED_COUNT_BATCHES, REFUSED_CALLS, REQUESTS

__all__ = ["NewRequest", "Phase", "RequestStore", "StoreUnavailable", "StormJoin", "Written"]

log = structlog.get_logger("kubernaut.gateway.store")

# One statement, so atomic: the batch id is recorded and its counts added, or neither; a known id adds
# nothing. Returns whether this call applied the batch.
_ADD_COUNTS = f"""
WITH fresh AS (
    INSERT INTO {APPLIED_COUNT_BATCHES} (batch_id) VALUES ($4) ON CONFLICT DO NOTHING RETURNING batch_id
), counted AS (
    UPDATE {REQUESTS} r
    SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, $3), updated_at = now()
    FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
    WHERE r.id = d.id AND EXISTS (SELECT 1 FROM fresh)
)
SELECT EXISTS (SELECT 1 FROM fresh)
"""
_PRUNE_BATCHES = f"DELETE FROM {APPLIED_COUNT_BATCHES} WHERE applied_at < now() - $1::interval"
# Group commits' tokens (commit_outcome.py) matter only while an outcome is being resolved.
_PRUNE_COMMIT_TOKENS = f"""
DELETE FROM {APPLIED_COUNT_BATCHES} WHERE applied_at < now() - interval '10 minutes'
  AND batch_id LIKE '{TOKEN_PREFIX}%'
"""
# Refused Redis calls (migration 080): recorded before the 503, voided on every master for a minute.
_RECORD_REFUSED = f"INSERT INTO {REFUSED_CALLS} (nonce, key_prefix) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_RECENT_REFUSED = f"""
SELECT nonce, extract(epoch FROM now() - refused_at)::float8 AS age FROM {REFUSED_CALLS}
WHERE key_prefix = $1 AND refused_at > now() - $2::interval
"""
_PRUNE_REFUSED = f"DELETE FROM {REFUSED_CALLS} WHERE refused_at < now() - interval '10 minutes'"

# Errors after which the pool's connections are presumed dead.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # asyncpg's protocol state can be left mid-operation when the server goes away under it.
    asyncpg.exceptions.InternalClientError,
    # A node demoted under an open connection (a PostgreSQL switchover): reconnect to the new primary.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
_PROBE_INTERVAL_S = 0.5


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (a round trip per use): the gateway leaves no
    session state behind (no LISTEN, advisory locks, cursors or SET); asyncpg still rolls back an open
    transaction and drops listeners before calling this."""


@contextlib.asynccontextmanager
async def _group_transaction(conn: Conn, mark: CommitMark) -> AsyncIterator[None]:
    """A group commit's transaction: ``BEGIN`` and the mark in one round trip (a new alert's answer waits
    for every round trip of its commit), ``COMMIT`` after the body, ``ROLLBACK`` after a failure."""
    try:
        await conn.execute(mark.begin())
        yield
    except BaseException as err:
        if not isinstance(err, _CONNECTION_ERRORS):
            with contextlib.suppress(*_CONNECTION_ERRORS, asyncpg.PostgresError):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


class StoreUnavailable(Exception):
    """PostgreSQL did not take the write; nothing of it was committed."""


@dataclass(slots=True)
class _Work:
    """One webhook's writes waiting for the next group commit."""

    hook: Webhook
    future: asyncio.Future[list[Written]]


class RequestStore:
    """The gateway's PostgreSQL writes, committed in groups: new requests, storms, resolutions, counts."""

    def __init__(self, settings: PostgresSettings, metrics: GatewayMetrics, max_affected: int) -> None:
        self._settings = settings
        self._metrics = metrics
        self._max_affected = max_affected
        self._pool: asyncpg.Pool | None = None
        self._probe: asyncio.Task[None] | None = None
        self._queue: list[_Work] = []
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self.available = False

    async def start(self) -> None:
        s = self._settings
        self._pool = await asyncpg.create_pool(
            s.dsn.get_secret_value(),
            min_size=s.min_pool,
            max_size=s.max_pool,
            command_timeout=s.command_timeout_s,
            timeout=s.command_timeout_s,
            reset=_keep_session,
        )
        self._committer = asyncio.create_task(self._commit_loop())
        self.available = True

    async def close(self) -> None:
        for task in (self._probe, self._committer):
            if task is not None:
                task.cancel()
                await asyncio.wait([task], timeout=self._settings.command_timeout_s)
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "RequestStore.start() not called"
        return self._pool

    async def ping(self) -> bool:
        """Ask PostgreSQL; an answer also ends an outage (new signals are taken again)."""
        try:
            await self.pool.fetchval("SELECT 1", timeout=1.0)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError):
            return False
        if not self.available:
            log.info("postgres available again")
            self.available = True
        return True

    async def _failed(self, err: BaseException) -> StoreUnavailable:
        self._metrics.postgres_errors.inc()
        if isinstance(err, _CONNECTION_ERRORS):
            if self.available:
                log.warning("postgres unavailable", error=repr(err))
            self.available = False
            await self.pool.expire_connections()
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._wait_until_back())
        else:
            log.error("postgres write failed", error=repr(err))
        return StoreUnavailable(str(err) or type(err).__name__)

    async def _wait_until_back(self) -> None:
        while not self.available:
            await asyncio.sleep(_PROBE_INTERVAL_S)
            await self.ping()

    async def write(
        self,
        *,
        signal_type: str,
        source: str,
        now: datetime,
        singles: Sequence[NewRequest],
        storms: Sequence[StormJoin],
        resolves: Sequence[str],
    ) -> Written:
        """One phase of writes (see :meth:`write_phases`)."""
        phase = Phase(
            {r.signal.fingerprint: r for r in singles},
            {s.fingerprint: s for s in storms},
            dict.fromkeys(resolves),
        )
        return (await self.write_phases(signal_type=signal_type, source=source, now=now, phases=[phase]))[0]

    async def write_phases(
        self,
        *,
        signal_type: str,
        source: str,
        now: datetime,
        phases: Sequence[Phase],
        counts: dict[int, int] | None = None,
    ) -> list[Written]:
        """Apply one webhook's writes atomically, phase after phase, and add ``counts`` (its duplicates
        of known requests); return once they are committed.

        Group commit: webhooks that arrive while a commit is in progress are written together in the
        next transaction (one WAL flush for all), set-based (setcommit.py); if a statement fails, they
        are written again one by one, each in a savepoint of its own, so that the failing webhook fails
        alone. Results are exactly those of running the webhooks one after another.
        A commit whose answer is lost with its connection is resolved (commit_outcome.py): committed,
        it returns as if answered; otherwise, or if undecided within the command timeout, it fails.
        """
        work = _Work(
            Webhook(signal_type, source, now, phases, counts or {}),
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(work)
        self._wakeup.set()
        return await work.future

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                await self._commit(batch)
            except Exception as err:  # a bug must fail its webhooks, not stop every later write
                log.exception("group commit failed")
                for work in batch:
                    if not work.future.done():
                        work.future.set_exception(err)

    async def _commit(self, batch: list[_Work]) -> None:
        outcomes: list[list[Written] | BaseException] = []
        mark = CommitMark.new()
        answered = False  # every statement answered: a connection lost now was lost at COMMIT
        try:
            async with self.pool.acquire() as conn:
                try:
                    async with _group_transaction(conn, mark):
                        hooks = [work.hook for work in batch]
                        outcomes = list(await apply_group(conn, hooks, self._max_affected))
                        answered = True
                except asyncpg.PostgresError as err:
                    if isinstance(err, _CONNECTION_ERRORS) or len(batch) == 1:
                        raise
                    # A webhook's statement failed the group's: find it by writing them one by one.
                    log.info("group commit retried one by one", webhooks=len(batch), error=repr(err))
                    mark, answered = CommitMark.new(), False
                    async with conn.transaction():
                        await conn.execute(mark.statements())
                        outcomes = await self._one_by_one(conn, batch)
                        answered = True
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            failure = await self._failed(err)
            unknown = answered and isinstance(err, _CONNECTION_ERRORS)
            if not (unknown and await self._committed(mark)):
                outcomes = [failure] * len(batch)
        for work, outcome in zip(batch, outcomes, strict=True):
            if work.future.done():
                continue  # the caller went away; its writes stand, as after any answer lost in transit
            if isinstance(outcome, list):
                work.future.set_result(outcome)
            elif isinstance(outcome, StoreUnavailable):
                work.future.set_exception(outcome)
            else:
                work.future.set_exception(await self._failed(outcome))

    async def _one_by_one(self, conn: Conn, batch: list[_Work]) -> list[list[Written] | BaseException]:
        """Each webhook in a savepoint of its own, so a failing one fails alone."""
        outcomes: list[list[Written] | BaseException] = []
        for work in batch:
            try:
                async with conn.transaction():
                    outcomes.append(await apply_webhook(conn, work.hook, self._max_affected))
            except asyncpg.PostgresError as err:
                if isinstance(err, _CONNECTION_ERRORS):
                    raise
                outcomes.append(err)
        return outcomes

    async def _committed(self, mark: CommitMark) -> bool:
        """Resolve a commit whose answer was lost, within the command timeout (the failover budget)."""
        s = self._settings
        verdict = await resolve(self.pool, s.dsn.get_secret_value(), mark, s.command_timeout_s)
        log.warning("resolved a commit whose answer was lost", verdict=verdict.value, token=mark.token)
        return verdict is Verdict.COMMITTED

    async def add_counts(self, counts: dict[int, int], now: datetime, batch_id: str) -> bool:
        """Add one batch of duplicate counts, once: False if ``batch_id`` was applied before."""
        ids = sorted(counts)
        try:
            return bool(await self.pool.fetchval(_ADD_COUNTS, ids, [counts[i] for i in ids], now, batch_id))
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None

    async def record_refused(self, nonce: str, key_prefix: str) -> None:
        """Record a Redis call refused without knowing whether it ran, for every instance to void."""
        try:
            await self.pool.execute(_RECORD_REFUSED, nonce, key_prefix)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None

    async def recent_refused(self, key_prefix: str, within: timedelta) -> list[tuple[str, float]]:
        """The calls in ``key_prefix`` refused within ``within``: (nonce, seconds since). A background
        look: its failure leaves the store's availability to what the requests find."""
        try:
            rows = await self.pool.fetch(_RECENT_REFUSED, key_prefix, within)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise StoreUnavailable(str(err) or type(err).__name__) from None
        return [(r["nonce"], r["age"]) for r in rows]

    async def prune(self, older_than: timedelta) -> None:
        """Forget applied batch ids older than any batch can wait unflushed in Redis, and commit tokens and
        refused calls older than ten minutes."""
        try:
            await self.pool.execute(_PRUNE_BATCHES, older_than)
            await self.pool.execute(_PRUNE_COMMIT_TOKENS)
            await self.pool.execute(_PRUNE_REFUSED)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None
