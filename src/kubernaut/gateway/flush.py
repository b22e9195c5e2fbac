"""Duplicate counts: accumulated in Redis by the ingest script, added to PostgreSQL in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.redis_state import RedisState, RedisUnavailable
from kubernaut.gateway.store import RequestStore, StoreUnavailable

log = structlog.get_logger("kubernaut.gateway.flush")


class CountFlusher:
    """Every ``interval_s``: take this instance's batch from Redis, add it in PostgreSQL, and
    acknowledge it with the next take. An unacknowledged batch is offered again (PostgreSQL was
    down), so counts wait rather than vanish."""

    def __init__(
        self, redis: RedisState, store: RequestStore, metrics: GatewayMetrics, interval_s: float
    ) -> None:
        self._redis = redis
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._ack = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush_once()

    async def flush_once(self) -> int:
        """Flush one batch; return the number of occurrences written."""
        try:
            storms, counts = await self._redis.take_counts(ack=self._ack)
        except RedisUnavailable:
            return 0
        self._ack = False
        self._metrics.storm_windows_open.set(storms)
        if counts:
            try:
                await self._store.add_counts(counts, datetime.now(UTC))
            except StoreUnavailable:
                return 0
        self._ack = True
        return sum(counts.values())

    async def final(self) -> None:
        """At shutdown: flush what this process accumulated, then give the batch key back."""
        for _ in range(2):
            await self.flush_once()
        if not self._ack:
            log.warning("unflushed duplicate counts left in Redis for another instance to adopt")
            return
        try:
            await self._redis.take_counts(ack=True, leave=True)
        except RedisUnavailable:
            log.warning("could not release the count batch; another instance will adopt it")
