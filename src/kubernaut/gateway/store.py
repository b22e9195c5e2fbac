"""The gateway's writes to PostgreSQL: new requests, storm requests and their members, resolutions,
and batched duplicate counts. Every webhook's writes commit together or not at all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

from kubernaut.config import PostgresSettings
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.signal import Signal

log = structlog.get_logger("kubernaut.gateway.store")

_OPEN = "resolved_at IS NULL AND phase IN ('pending', 'processing')"

_UPSERT_SINGLES = f"""
INSERT INTO remediation_requests AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, first_seen, last_seen, occurrence_count)
SELECT u.f, u.n, $1, $2, u.sev, u.ns, u.kind, u.res, u.env, u.pri, u.l::jsonb, u.a::jsonb, $3, $3, u.c
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
            $11::text[], $12::text[], $13::text[], $14::bigint[])
     AS u(f, n, sev, ns, kind, res, env, pri, l, a, c)
ON CONFLICT (fingerprint) WHERE {_OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen),
              updated_at = now()
RETURNING r.id, r.fingerprint, (r.xmax = 0) AS inserted
"""

_UPSERT_STORM = f"""
INSERT INTO remediation_requests AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, first_seen, last_seen, occurrence_count,
    is_storm, storm_type, storm_window_start, storm_window_end)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13, $13, $14,
        true, $15, $16, $13)
ON CONFLICT (fingerprint) WHERE {_OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen),
              storm_window_end = greatest(r.storm_window_end, EXCLUDED.storm_window_end),
              updated_at = now()
RETURNING r.id, (r.xmax = 0) AS inserted
"""

# Members already taken in (a repeat that reached PostgreSQL) are skipped; resources beyond the cap are
# only counted.
_ADD_MEMBERS = """
WITH added AS (
    INSERT INTO storm_members (request_id, fingerprint, resource, first_seen)
    SELECT $1, m.f, m.res, $4 FROM unnest($2::text[], $3::text[]) AS m(f, res)
    ON CONFLICT DO NOTHING
    RETURNING fingerprint, resource
), named AS (
    SELECT ARRAY(SELECT resource FROM added WHERE resource <> '') AS resources
)
UPDATE remediation_requests r
SET storm_alert_count = r.storm_alert_count + (SELECT count(*) FROM added),
    affected_resources = (r.affected_resources || named.resources)[1:$5],
    affected_overflow = r.affected_overflow
        + greatest(0, cardinality(r.affected_resources) + cardinality(named.resources) - $5),
    updated_at = now()
FROM named
WHERE r.id = $1
RETURNING ARRAY(SELECT fingerprint FROM added)
"""

_RESOLVE = f"""
UPDATE remediation_requests
SET resolved_at = $2, last_seen = greatest(last_seen, $2), updated_at = now()
WHERE fingerprint = ANY($1::text[]) AND NOT is_storm AND {_OPEN}
RETURNING id, fingerprint
"""

# One statement, so atomic: the batch id is recorded and its counts added, or neither; a known id adds
# nothing. Returns whether this call applied the batch.
_ADD_COUNTS = """
WITH fresh AS (
    INSERT INTO applied_count_batches (batch_id) VALUES ($4) ON CONFLICT DO NOTHING RETURNING batch_id
), counted AS (
    UPDATE remediation_requests r
    SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, $3), updated_at = now()
    FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
    WHERE r.id = d.id AND EXISTS (SELECT 1 FROM fresh)
)
SELECT EXISTS (SELECT 1 FROM fresh)
"""
_PRUNE_BATCHES = "DELETE FROM applied_count_batches WHERE applied_at < now() - $1::interval"

# Errors after which the pool's connections are presumed dead.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # asyncpg's protocol state can be left mid-operation when the server goes away under it.
    asyncpg.exceptions.InternalClientError,
)
_PROBE_INTERVAL_S = 0.5


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (a round trip per use): the gateway leaves no
    session state behind (no LISTEN, advisory locks, cursors or SET); asyncpg still rolls back an open
    transaction and drops listeners before calling this."""


class StoreUnavailable(Exception):
    """PostgreSQL did not take the write; nothing of it was committed."""


@dataclass(slots=True)
class NewRequest:
    """A fingerprint PostgreSQL must create or count, with how often it came in this webhook."""

    signal: Signal
    environment: str
    priority: str
    occurrences: int = 1


@dataclass(slots=True)
class StormJoin:
    """Signals joining one storm window; ``members`` holds one signal per fingerprint."""

    fingerprint: str
    storm_type: str
    window_start: datetime
    first: Signal
    environment: str
    priority: str
    members: dict[str, Signal] = field(default_factory=dict)
    occurrences: int = 0


@dataclass(slots=True)
class Written:
    singles: dict[str, tuple[int, bool]]  # fingerprint -> (request id, inserted)
    storms: dict[str, tuple[int, bool, set[str]]]  # storm fingerprint -> (id, inserted, members added)
    resolved: dict[str, int]  # fingerprint -> closed request id


@dataclass(slots=True)
class _Work:
    """One webhook's writes waiting for the next group commit."""

    signal_type: str
    source: str
    now: datetime
    singles: Sequence[NewRequest]
    storms: Sequence[StormJoin]
    resolves: Sequence[str]
    future: asyncio.Future[Written]


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class RequestStore:
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
        """Apply one webhook's writes atomically; return once they are committed.

        Group commit: webhooks that arrive while a commit is in progress are written together in the
        next transaction (one WAL flush for all), each in a savepoint of its own so that one failing
        webhook fails alone. Results are exactly those of running the webhooks one after another.
        """
        work = _Work(
            signal_type, source, now, singles, storms, resolves, asyncio.get_running_loop().create_future()
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
        outcomes: list[Written | BaseException] = []
        try:
            async with self.pool.acquire() as conn, self._transaction(conn, batch):
                for work in batch:
                    savepoint = conn.transaction() if len(batch) > 1 else contextlib.nullcontext()
                    try:
                        async with savepoint:
                            outcomes.append(await self._apply(conn, work))
                    except asyncpg.PostgresError as err:
                        if isinstance(err, _CONNECTION_ERRORS) or len(batch) == 1:
                            raise
                        outcomes.append(err)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            failure = await self._failed(err)
            outcomes = [failure] * len(batch)
        for work, outcome in zip(batch, outcomes, strict=True):
            if work.future.done():
                continue  # the caller went away; its writes stand, as after any answer lost in transit
            if isinstance(outcome, Written):
                work.future.set_result(outcome)
            elif isinstance(outcome, StoreUnavailable):
                work.future.set_exception(outcome)
            else:
                work.future.set_exception(await self._failed(outcome))

    @staticmethod
    def _transaction(
        conn: PoolConnectionProxy[Any], batch: list[_Work]
    ) -> contextlib.AbstractAsyncContextManager[object]:
        """One statement alone needs no explicit transaction (one round trip instead of three)."""
        work = batch[0]
        if len(batch) == 1 and bool(work.singles) + len(work.storms) + bool(work.resolves) == 1:
            return contextlib.nullcontext()
        return conn.transaction()

    async def _apply(self, conn: PoolConnectionProxy[Any], work: _Work) -> Written:
        """One webhook's statements. Rows are touched in fingerprint order (no deadlocks between
        concurrent transactions)."""
        written = Written({}, {}, {})
        if work.singles:
            await self._upsert_singles(conn, work.signal_type, work.source, work.now, work.singles, written)
        for storm in sorted(work.storms, key=lambda s: s.fingerprint):
            await self._join_storm(conn, work.signal_type, work.source, work.now, storm, written)
        if work.resolves:
            rows = await conn.fetch(_RESOLVE, sorted(work.resolves), work.now)
            written.resolved = {r["fingerprint"]: r["id"] for r in rows}
        return written

    async def _upsert_singles(
        self,
        conn: PoolConnectionProxy[Any],
        signal_type: str,
        source: str,
        now: datetime,
        singles: Sequence[NewRequest],
        written: Written,
    ) -> None:
        rows = sorted(singles, key=lambda r: r.signal.fingerprint)
        result = await conn.fetch(
            _UPSERT_SINGLES,
            signal_type,
            source,
            now,
            [r.signal.fingerprint for r in rows],
            [r.signal.name for r in rows],
            [r.signal.severity for r in rows],
            [r.signal.namespace for r in rows],
            [r.signal.resource_kind for r in rows],
            [r.signal.resource_name for r in rows],
            [r.environment for r in rows],
            [r.priority for r in rows],
            [_json(r.signal.labels) for r in rows],
            [_json(r.signal.annotations) for r in rows],
            [r.occurrences for r in rows],
        )
        written.singles = {r["fingerprint"]: (r["id"], r["inserted"]) for r in result}

    async def _join_storm(
        self,
        conn: PoolConnectionProxy[Any],
        signal_type: str,
        source: str,
        now: datetime,
        storm: StormJoin,
        written: Written,
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
            _json(first.labels),
            _json(first.annotations),
            now,
            storm.occurrences,
            storm.storm_type,
            storm.window_start,
        )
        assert row is not None
        fps = sorted(storm.members)
        added = await conn.fetchval(
            _ADD_MEMBERS,
            row["id"],
            fps,
            [storm.members[f].resource for f in fps],
            now,
            self._max_affected,
        )
        written.storms[storm.fingerprint] = (row["id"], row["inserted"], set(added or ()))

    async def add_counts(self, counts: dict[int, int], now: datetime, batch_id: str) -> bool:
        """Add one batch of duplicate counts, once: False if ``batch_id`` was applied before."""
        ids = sorted(counts)
        try:
            return bool(await self.pool.fetchval(_ADD_COUNTS, ids, [counts[i] for i in ids], now, batch_id))
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None

    async def prune_count_batches(self, older_than: timedelta) -> None:
        """Forget applied batch ids older than any batch can wait unflushed in Redis."""
        try:
            await self.pool.execute(_PRUNE_BATCHES, older_than)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None
