"""What one Context-API process holds: the PostgreSQL pool, the cache tiers and the metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from kubernaut.config import Settings
from kubernaut.contextapi.cache import TieredCache
from kubernaut.contextapi.cache.invalidation import InvalidationListener
from kubernaut.contextapi.cache.l1 import RedisTier
from kubernaut.contextapi.cache.l2 import LocalCache
from kubernaut.contextapi.freshness import RequestChangeListener
from kubernaut.contextapi.metrics import ContextApiMetrics, Origin
from kubernaut.contextapi.queries import STORE_ERRORS
from kubernaut.contextapi.standby import ReadRouter
from kubernaut.redis import RedisHandle, connect
from kubernaut.store.migrate import prepare_schema

log = structlog.get_logger(__name__)


@dataclass
class ContextApi:
    """What one Context-API process holds: settings, metrics, PostgreSQL pools, cache tiers and listeners."""

    settings: Settings
    metrics: ContextApiMetrics
    pool: asyncpg.Pool
    reads: ReadRouter
    cache: TieredCache
    redis: RedisHandle | None
    listener: InvalidationListener | None
    changes: RequestChangeListener

    @classmethod
    async def open(cls, settings: Settings, metrics: ContextApiMetrics) -> ContextApi:
        cfg = settings.context_api
        pg = settings.postgres.for_service("context_api")
        pool = await asyncpg.create_pool(
            pg.dsn.get_secret_value(),
            min_size=min(pg.min_pool, pg.max_pool),
            max_size=pg.max_pool,
            command_timeout=pg.command_timeout_s,
            # JIT compilation costs more than it saves on these short queries.
            server_settings={"jit": "off"},
        )
        read_pool: asyncpg.Pool | None = None
        redis: RedisHandle | None = None
        l1: RedisTier | None = None
        listener: InvalidationListener | None = None
        changes: RequestChangeListener | None = None
        try:
            await prepare_schema(settings.postgres, "context_api")
            if pg.read_dsn is not None:
                read_pool = await asyncpg.create_pool(
                    pg.read_dsn.get_secret_value(),
                    min_size=min(pg.min_pool, pg.max_pool),
                    max_size=pg.max_pool,
                    command_timeout=pg.command_timeout_s,
                    server_settings={"jit": "off"},
                )
            reads = ReadRouter(pool, read_pool, timeout_s=pg.command_timeout_s)
            l2 = LocalCache(cfg.l2.max_entries, cfg.l2.max_bytes, cfg.l2.ttl_s)
            if cfg.l1.enabled:
                redis = connect(cfg.redis, client_name="kubernaut-context-api")
                # A cache call either answers within the timeouts or fails: no retries behind our back.
                redis.client.set_retry(Retry(NoBackoff(), 0))
                t = cfg.redis.timeouts
                l1 = RedisTier(
                    redis.client,
                    where=redis.describe(),
                    prefix=cfg.key_prefix,
                    ttl_s=cfg.l1.ttl_s,
                    max_value_bytes=cfg.l1.max_value_bytes,
                    op_timeout_s=t.connect_s + 2 * t.socket_s,
                    failure_threshold=cfg.breaker.failure_threshold,
                    reset_timeout_s=cfg.breaker.reset_timeout_s,
                    allow_shared=cfg.allow_shared_redis,
                    metrics=metrics,
                )
                await l1.start()
                listener = InvalidationListener(l1, l2, metrics.invalidations.labels(Origin.REMOTE.value).inc)
                listener.start()
            else:
                metrics.l1_available.set(0)
            cache = TieredCache(l2, l1, metrics, unavailable=STORE_ERRORS)
            changes = RequestChangeListener(
                pg.dsn.get_secret_value(),
                cache,
                timeout_s=pg.command_timeout_s,
                before_invalidate=reads.fence_after_change,
            )
            await changes.start(wait_s=pg.command_timeout_s)
        except BaseException:
            if changes is not None:
                await changes.stop()
            if listener is not None:
                await listener.stop()
            if l1 is not None:
                await l1.aclose()
            if read_pool is not None:
                await read_pool.close()
            await pool.close()
            if redis is not None:
                await redis.aclose()
            raise
        return cls(settings, metrics, pool, reads, cache, redis, listener, changes)

    async def close(self) -> None:
        await self.changes.stop()
        if self.listener is not None:
            await self.listener.stop()
        await self.cache.idle()
        if self.cache.l1 is not None:
            await self.cache.l1.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        for pool in (self.pool, self.reads.standby):
            if pool is None:
                continue
            try:
                async with asyncio.timeout(5):
                    await pool.close()
            except TimeoutError:  # a connection still checked out must not hold the shutdown forever
                pool.terminate()
