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

from kubernaut.config import AlertTimeSettings, PostgresSettings
from kubernaut.gateway.commit_outcome import TOKEN_PREFIX, CommitMark, Verdict, resolve
from kubernaut.gateway.ingest_protocol import CountBatch, MemberRecord
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.onebyone import Conn, apply_webhook
from kubernaut.gateway.setcommit import CLOSE_STORMS, apply_group
from kubernaut.gateway.writes import NewRequest, Phase, StormJoin, Webhook, Written
from kubernaut.store.schema import (
    APPLIED_COUNT_BATCHES,
    REFUSED_CALLS,
    REQUESTS,
    STORM_MEMBERS,
    add_resources,
)

__all__ = ["NewRequest", "Phase", "RequestStore", "StoreUnavailable", "StormJoin", "Written"]

log = structlog.get_logger("kubernaut.gateway.store")

# A count batch is applied in one transaction that records its id first: a known id adds nothing.
_FRESH_BATCH = f"""
INSERT INTO {APPLIED_COUNT_BATCHES} (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1
"""
_ADD_COUNTS = f"""
UPDATE {REQUESTS} r
SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, $3), updated_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
WHERE r.id = d.id
"""
# Storm members joined in Redis and voided calls (scripts/ingest.lua, "Bound storms"; migration 090)
# are applied one batch at a time across gateway instances: a void's deletion must see every member
# row its call wrote, and a member's insert every void recorded before it.
_MEMBER_BATCHES_LOCK = "SELECT pg_advisory_xact_lock(90090)"
_REFUSE = f"""
INSERT INTO {REFUSED_CALLS} (nonce, key_prefix) SELECT n, $2 FROM unnest($1::text[]) AS n
ON CONFLICT DO NOTHING
"""
_UNJOIN = f"""
DELETE FROM {STORM_MEMBERS} m USING unnest($1::text[], $2::bigint[]) AS d(nonce, id)
WHERE m.request_id = d.id AND m.joined_by = d.nonce
RETURNING m.request_id, m.resource
"""
# A member taken back: out of the storm's count and affected resources (in the list, or in the overflow).
_UNCOUNT_MEMBER = f"""
UPDATE {REQUESTS} r
SET storm_alert_count = r.storm_alert_count - 1,
    affected_resources = array_remove(r.affected_resources, $2),
    affected_overflow = r.affected_overflow - CASE WHEN $2 = '' OR $2 = ANY(r.affected_resources) THEN 0
                                                   ELSE least(r.affected_overflow, 1) END,
    updated_at = now()
WHERE r.id = $1
"""
# Members joined in Redis, but not those of calls voided since (refused); ``o`` the order they joined in,
# which the affected resources keep. Times in ms / us from the master's clock; a member's first seen is
# its alert's own start when believable at its receipt (as signal.AlertTimes: at most $9 ms older, $10 ms
# ahead). The storm's window reaches the last join's receipt.
_ADD_JOINED = f"""
WITH j AS (
    SELECT DISTINCT ON (d.id, d.f) d.id, d.f, d.res, d.nonce, d.o, to_timestamp(d.rcv_us / 1e6) AS rcv,
           CASE WHEN d.start_ms <> 0 AND d.start_ms BETWEEN d.rcv_us / 1000 - $9 AND d.rcv_us / 1000 + $10
                THEN to_timestamp(d.start_ms / 1e3) ELSE to_timestamp(d.rcv_us / 1e6) END AS fs
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::int[])
         AS d(id, f, res, start_ms, rcv_us, nonce, o)
    WHERE NOT EXISTS (SELECT 1 FROM {REFUSED_CALLS} c WHERE c.nonce = d.nonce)
    ORDER BY d.id, d.f, d.o
), added AS (
    INSERT INTO {STORM_MEMBERS} (request_id, fingerprint, resource, first_seen, received_at, joined_by)
    SELECT j.id, j.f, j.res, j.fs, j.rcv, j.nonce FROM j
    ON CONFLICT DO NOTHING
    RETURNING request_id, fingerprint, resource
), per_storm AS (
    SELECT j.id, max(j.rcv) AS last, count(a.fingerprint) AS n,
           coalesce(array_agg(a.resource ORDER BY j.o) FILTER (WHERE a.resource <> ''), '{{}}') AS resources
    FROM j LEFT JOIN added a ON a.request_id = j.id AND a.fingerprint = j.f
    GROUP BY j.id
)
UPDATE {REQUESTS} r
SET storm_alert_count = r.storm_alert_count + p.n,
    {add_resources("r", "p.resources", "$8")},
    storm_window_end = greatest(r.storm_window_end, p.last),
    updated_at = now()
FROM per_storm p
WHERE r.id = p.id
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

    async def apply_batch(
        self, batch: CountBatch, now: datetime, batch_id: str, key_prefix: str, times: AlertTimeSettings
    ) -> bool:
        """Apply one count batch once (False: ``batch_id`` was applied before): its calls voided since
        (recorded as refused; the members they wrote deleted), its duplicate counts, and the storm members
        joined in Redis (not those of refused calls), with first seen as ``times`` believe."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(_FRESH_BATCH, batch_id) is None:
                    return False
                if batch.members or batch.voided:
                    await conn.execute(_MEMBER_BATCHES_LOCK)
                if batch.voided:
                    await self._take_back(conn, batch.voided, now, key_prefix)
                if batch.counts:
                    ids = sorted(batch.counts)
                    await conn.execute(_ADD_COUNTS, ids, [batch.counts[i] for i in ids], now)
                if batch.members:
                    await self._add_joined(conn, batch.members, times)
                return True
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None

    async def _add_joined(self, conn: Conn, members: list[MemberRecord], times: AlertTimeSettings) -> None:
        members = sorted(members, key=lambda m: (m.request_id, m.fingerprint))  # rows in a steady order
        joined = sorted(range(len(members)), key=lambda k: (members[k].received_us, members[k].fingerprint))
        order = [0] * len(members)
        for o, k in enumerate(joined, start=1):
            order[k] = o
        await conn.execute(
            _ADD_JOINED,
            [m.request_id for m in members],
            [m.fingerprint for m in members],
            [m.resource for m in members],
            [m.started_ms for m in members],
            [m.received_us for m in members],
            [m.nonce for m in members],
            order,
            self._max_affected,
            times.max_age_s * 1000,
            times.max_future_skew_s * 1000,
        )

    @staticmethod
    async def _take_back(conn: Conn, voided: dict[str, list[int]], now: datetime, key_prefix: str) -> None:
        """Voided calls: refused for good (their members still in Redis batches are not written), and
        the members they wrote deleted; a storm that waited only for those may close now."""
        nonces = sorted(voided)
        await conn.execute(_REFUSE, nonces, key_prefix)
        pairs = [(nonce, rid) for nonce in nonces for rid in sorted(set(voided[nonce]))]
        if not pairs:
            return
        deleted = await conn.fetch(_UNJOIN, [n for n, _ in pairs], [rid for _, rid in pairs])
        for row in deleted:
            await conn.execute(_UNCOUNT_MEMBER, row["request_id"], row["resource"])
        if deleted:
            storms = sorted({row["request_id"] for row in deleted})
            await conn.execute(CLOSE_STORMS, storms, [now] * len(storms))

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
