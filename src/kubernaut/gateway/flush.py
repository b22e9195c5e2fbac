"""Duplicate counts: accumulated in Redis by the ingest script, added to PostgreSQL in batches."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

import structlog

from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.redis_state import RedisState, RedisUnavailable
from kubernaut.gateway.store import RequestStore, StoreUnavailable

log = structlog.get_logger("kubernaut.gateway.flush")

# Applied batch ids are kept this long in PostgreSQL: far longer than a batch can wait in Redis for a
# flush (it waits only while PostgreSQL is down, and dedup entries expire long before).
BATCH_RETENTION = timedelta(days=7)
_PRUNE_EVERY_S = 3600.0


class CountFlusher:
    """Every ``interval_s``: take this instance's batch from Redis, add it in PostgreSQL under its id
    (once, however often it is offered), and acknowledge that id with the next take. A batch not yet
    in PostgreSQL stays in Redis under its id and is offered again, so counts wait rather than vanish;
    one already in PostgreSQL is only acknowledged."""

    def __init__(
        self, redis: RedisState, store: RequestStore, metrics: GatewayMetrics, interval_s: float
    ) -> None:
        self._redis = redis
        self._store = store
        self._metrics = metrics
        self.interval_s = interval_s
        self._flushed: str | None = None  # in PostgreSQL, not yet acknowledged in Redis
        self._pruned_at = 0.0

    async def step(self) -> None:
        """What the gateway's count-flusher worker runs every ``interval_s``."""
        await self.flush_once()
        await self._prune()

    async def flush_once(self) -> int:
        """Flush one batch; return the number of occurrences it added in PostgreSQL. Nothing while the
        gateway doubts its master (``RedisState.counts_in_redis``): a master about to be deposed may hold
        what the switch discards, e.g. a refused call it ran late, whose void comes after the take.
        A batch with storm members joined in Redis is acknowledged at once, for a resolution may be
        waiting for it (scripts/ingest.lua, "Bound storms")."""
        if not self._redis.counts_in_redis:
            return 0
        try:
            storms, batch_id, batch = await self._redis.take_counts(ack=self._flushed)
        except RedisUnavailable:
            return 0  # acknowledged or not, `_flushed` is named again by the next take
        self._flushed = None
        self._metrics.storm_windows_open.set(storms)
        if batch_id is None or not self._redis.counts_in_redis:  # a call failed while the take was queued
            return 0  # a batch stays this instance's, offered again by the next take
        now = datetime.now(UTC)
        try:
            applied = await self._store.apply_batch(
                batch, now, batch_id, self._redis.prefix, self._redis.settings.alert_times
            )
        except StoreUnavailable:
            return 0
        self._flushed = batch_id
        occurrences = sum(batch.counts.values())
        if not applied:  # offered again: its acknowledgement was lost, or its instance died after it
            log.info("count batch already in PostgreSQL", batch=batch_id, occurrences=occurrences)
        self._metrics.count_batches.labels(result="applied" if applied else "already_applied").inc()
        if batch.members:  # a resolution may be waiting for it; else the next take acknowledges it
            with contextlib.suppress(RedisUnavailable):
                await self._redis.take_counts(ack=batch_id, ack_only=True)
                self._flushed = None
        return occurrences if applied else 0

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned_at < _PRUNE_EVERY_S:
            return
        try:
            await self._store.prune(BATCH_RETENTION)
        except StoreUnavailable:
            return
        self._pruned_at = time.monotonic()

    async def final(self) -> None:
        """At shutdown: flush what this process accumulated (not while it doubts its master), then
        leave; a batch still unflushed is handed to the other instances at once."""
        for _ in range(2):
            await self.flush_once()
        try:
            await self._redis.take_counts(ack=self._flushed, leave=True)
        except RedisUnavailable:
            log.warning("could not leave the count flush; another instance will adopt the batch")
