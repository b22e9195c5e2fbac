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
from kubernaut.gateway.commit_outcome import TOKEN_PREFIX, CommitMark, Verdict, resolve, take_mark
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.signal import Signal

log = structlog.get_logger("kubernaut.gateway.store")

_OPEN = "resolved_at IS NULL AND phase IN ('pending', 'processing')"

# Opens or counts each fingerprint's request in the period Redis ordered it in (migration 070).
_UPSERT_SINGLES = """
SELECT o_id AS id, o_fingerprint AS fingerprint, o_inserted AS inserted
FROM kubernaut_fire($1, $2, $3, $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                    $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[],
                    $16::bigint[], $17::bigint[])
"""

_UPSERT_STORM = f"""
INSERT INTO remediation_requests AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, first_seen, last_seen, occurrence_count,
    is_storm, storm_type, storm_window_start, storm_window_end, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $17::timestamptz,
        greatest($17::timestamptz, $13), $14, true, $15, $16, $13, $13)
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
    INSERT INTO storm_members (request_id, fingerprint, resource, first_seen, received_at)
    SELECT $1, m.f, m.res, m.fs, $4 FROM unnest($2::text[], $3::text[], $6::timestamptz[]) AS m(f, res, fs)
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

# Closes the requests opened before each resolution in Redis order (migration 070).
_RESOLVE = """
SELECT o_id AS id, o_fingerprint AS fingerprint
FROM kubernaut_resolve($3, $1::text[], $2::timestamptz[], $4::bigint[])
"""

# Members of open storms resolve; a storm whose members have all resolved closes (at its last
# member's resolution).
_RESOLVE_MEMBERS = f"""
WITH d AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS d(f, t)),
resolved AS (
    UPDATE storm_members m SET resolved_at = greatest(m.first_seen, d.t)
    FROM d, remediation_requests r
    WHERE m.fingerprint = d.f AND m.resolved_at IS NULL AND r.id = m.request_id AND r.is_storm
      AND r.{_OPEN}
    RETURNING m.request_id, m.fingerprint, m.resolved_at
)
SELECT request_id, fingerprint, resolved_at FROM resolved
"""

_CLOSE_STORMS = f"""
UPDATE remediation_requests r
SET resolved_at = greatest(r.first_seen, (SELECT max(m.resolved_at) FROM storm_members m
                                          WHERE m.request_id = r.id)),
    resolved_received_at = $2, updated_at = now()
WHERE r.id = ANY($1::bigint[]) AND r.{_OPEN}
  AND NOT EXISTS (SELECT 1 FROM storm_members m WHERE m.request_id = r.id AND m.resolved_at IS NULL)
"""

# A member firing again is unresolved again (its storm stays open).
_REOPEN_MEMBERS = """
UPDATE storm_members SET resolved_at = NULL
WHERE request_id = $1 AND fingerprint = ANY($2::text[]) AND resolved_at IS NOT NULL
"""

# The storm's group's requests opened in the detection window before the storm: linked to it.
_LINK_EARLIER = """
UPDATE remediation_requests r SET storm_request_id = $1, updated_at = now()
WHERE r.signal_name = $2 AND r.namespace = $3 AND NOT r.is_storm AND r.storm_request_id IS NULL
  AND r.received_at >= $4
"""

# A webhook's duplicates of known requests, counted in its own transaction.
_COUNT_DUPLICATES = """
UPDATE remediation_requests r
SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, $3), updated_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
WHERE r.id = d.id
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
# Group commits' tokens (commit_outcome.py) matter only while an outcome is being resolved.
_PRUNE_COMMIT_TOKENS = f"""
DELETE FROM applied_count_batches WHERE applied_at < now() - interval '10 minutes'
  AND batch_id LIKE '{TOKEN_PREFIX}%'
"""

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


# The place in Redis's order of a signal that has none: after every other.
_LAST = 2**62


class StoreUnavailable(Exception):
    """PostgreSQL did not take the write; nothing of it was committed."""


@dataclass(slots=True)
class NewRequest:
    """A fingerprint PostgreSQL must create or count, with how often it came in this webhook."""

    signal: Signal
    environment: str
    priority: str
    occurrences: int = 1
    first_seen: datetime | None = None  # the alert's own time (else the receipt time)
    period: int = 0  # the period Redis saw it in, and its place in Redis's order (migration 070)
    seq: int = _LAST


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
    first_seen: dict[str, datetime] = field(default_factory=dict)  # member -> its alert's own time
    lookback: timedelta = timedelta(0)  # the detection window: earlier requests within it are linked


@dataclass(slots=True)
class Phase:
    """A run of a webhook's signals with every firing before every resolution: new requests and storm
    joins first, then the resolutions. A webhook is cut into phases where a firing follows a
    resolution, so PostgreSQL sees its signals in batch order, as if they came one by one."""

    singles: dict[str, NewRequest] = field(default_factory=dict)
    storms: dict[str, StormJoin] = field(default_factory=dict)
    resolves: dict[str, datetime | None] = field(default_factory=dict)  # fingerprint -> alert's end
    resolve_seqs: dict[str, int] = field(default_factory=dict)  # fingerprint -> place in Redis's order


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
    phases: Sequence[Phase]
    counts: dict[int, int]  # duplicates of known requests (request id -> occurrences)
    future: asyncio.Future[list[Written]]


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
        next transaction (one WAL flush for all), each in a savepoint of its own so that one failing
        webhook fails alone. Results are exactly those of running the webhooks one after another.
        A commit whose answer is lost with its connection is resolved (commit_outcome.py): committed,
        it returns as if answered; otherwise, or if undecided within the command timeout, it fails.
        """
        work = _Work(
            signal_type, source, now, phases, counts or {}, asyncio.get_running_loop().create_future()
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
        mark: CommitMark | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                mark = await take_mark(conn)
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
            # Every statement answered, so the connection failed at COMMIT: its outcome is unknown.
            unknown = mark is not None and len(outcomes) == len(batch) and isinstance(err, _CONNECTION_ERRORS)
            if not (unknown and mark is not None and await self._committed(mark)):
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

    async def _committed(self, mark: CommitMark) -> bool:
        """Resolve a commit whose answer was lost, within the command timeout (the failover budget)."""
        s = self._settings
        verdict = await resolve(self.pool, s.dsn.get_secret_value(), mark, s.command_timeout_s)
        log.warning("resolved a commit whose answer was lost", verdict=verdict.value, xid=mark.xid)
        return verdict is Verdict.COMMITTED

    async def _apply(self, conn: PoolConnectionProxy[Any], work: _Work) -> list[Written]:
        """One webhook's statements, phase after phase. Within a phase rows are touched in fingerprint
        order (fewer deadlocks between concurrent transactions)."""
        result = []
        for phase in work.phases:
            written = Written({}, {}, {})
            if phase.singles:
                singles = list(phase.singles.values())
                await self._upsert_singles(conn, work.signal_type, work.source, work.now, singles, written)
            for storm in sorted(phase.storms.values(), key=lambda s: s.fingerprint):
                await self._join_storm(conn, work.signal_type, work.source, work.now, storm, written)
            if phase.resolves:
                fps = sorted(phase.resolves)
                times = [phase.resolves[f] or work.now for f in fps]
                seqs = [phase.resolve_seqs.get(f, _LAST) for f in fps]
                rows = await conn.fetch(_RESOLVE, fps, times, work.now, seqs)
                written.resolved = {r["fingerprint"]: r["id"] for r in rows}
                members = await conn.fetch(_RESOLVE_MEMBERS, fps, times)
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
            [r.first_seen or now for r in rows],
            [r.period for r in rows],
            [r.seq for r in rows],
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
            self._max_affected,
            [storm.first_seen.get(f, now) for f in fps],
        )
        added = set(added or ())
        if len(added) < len(fps):
            await conn.execute(_REOPEN_MEMBERS, row["id"], [f for f in fps if f not in added])
        if row["inserted"]:
            await conn.execute(
                _LINK_EARLIER, row["id"], first.name, first.namespace, storm.window_start - storm.lookback
            )
        written.storms[storm.fingerprint] = (row["id"], row["inserted"], added)

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
            await self.pool.execute(_PRUNE_COMMIT_TOKENS)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as err:
            raise await self._failed(err) from None
