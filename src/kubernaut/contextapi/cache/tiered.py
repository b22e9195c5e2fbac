"""The read path: L2, then L1, then the loader (L3), with single-flight on misses.

Fills go downward only with what was just read: an L1 hit fills L2; an L3 load fills L2 at once and L1 in
the background, so a slow or hung Redis never delays the answer by more than the one read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum

from kubernaut.contextapi.cache.l1 import RedisTier
from kubernaut.contextapi.cache.l2 import LocalCache
from kubernaut.contextapi.cache.singleflight import SingleFlight
from kubernaut.contextapi.metrics import ContextApiMetrics, Origin


class Tier(StrEnum):
    """Where an answer came from (the ``X-Cache`` header and the metrics' label)."""

    L1 = "l1"
    L2 = "l2"
    L3 = "l3"
    STALE = "stale"  # L3 failed; this replica's last known answer, invalidated since


Loaded = tuple[bytes | None, Tier]


class TieredCache:
    """The read path: L2, then L1, then the loader (L3); invalidation by tag across all tiers."""

    def __init__(
        self,
        l2: LocalCache,
        l1: RedisTier | None,
        metrics: ContextApiMetrics,
        unavailable: tuple[type[BaseException], ...] = (),
    ) -> None:
        """``unavailable``: the loader's errors after which a last known answer is better than none."""
        self.l2 = l2
        self.l1 = l1
        self._metrics = metrics
        self._unavailable = unavailable
        self._flight: SingleFlight[Loaded] = SingleFlight(metrics.singleflight_collapsed.inc)
        self._background: set[asyncio.Task[None]] = set()

    async def get(self, key: str, tags: Iterable[str], load: Callable[[], Awaitable[bytes | None]]) -> Loaded:
        """The cached body for ``key`` and the tier that served it; None when the loader found nothing
        (not cached: an absent incident may appear later)."""
        body = self.l2.get(key)
        if body is not None:
            self._metrics.cache_hits.labels("l2").inc()
            return body, Tier.L2
        self._metrics.cache_misses.labels("l2").inc()
        tag_list = list(tags)
        return await self._flight.do(key, lambda: self._load(key, tag_list, load))

    async def _load(self, key: str, tags: list[str], load: Callable[[], Awaitable[bytes | None]]) -> Loaded:
        l2_generation = self.l2.generation
        l1_generation = None
        if self.l1 is not None and self.l1.available:
            body, l1_generation = await self.l1.get(key)
            if body is not None:
                self._metrics.cache_hits.labels("l1").inc()
                self.l2.put(key, body, tags, l2_generation)
                return body, Tier.L1
            if l1_generation is not None:
                self._metrics.cache_misses.labels("l1").inc()
        try:
            body = await load()
        except self._unavailable:
            stale = self.l2.last_known(key)
            if stale is None:
                raise
            self._metrics.cache_hits.labels(Tier.STALE.value).inc()
            return stale, Tier.STALE
        if body is not None:
            self.l2.put(key, body, tags, l2_generation)
            if self.l1 is not None and l1_generation is not None:
                self._spawn(self.l1.put(key, body, tags, l1_generation))
        return body, Tier.L3

    async def invalidate(self, tags: Iterable[str], origin: Origin = Origin.LOCAL) -> None:
        """After a write: Redis first (so no replica refills L2 from stale L1), then this replica's L2.

        A write only this replica knows of (``local``) is announced to the others through Redis; one
        PostgreSQL announced (``postgres``) reached every replica already."""
        tag_list = list(tags)
        if self.l1 is not None:
            await self.l1.invalidate(tag_list, announce=origin is Origin.LOCAL)
        self.l2.invalidate(tag_list)
        self._metrics.invalidations.labels(origin.value).inc()

    async def invalidate_everything(self, origin: Origin) -> None:
        """Invalidate every entry of L1 and of this replica's L2 (changes may have gone unannounced)."""
        if self.l1 is not None:
            await self.l1.invalidate_everything()
        self.l2.invalidate_all()
        self._metrics.invalidations.labels(origin.value).inc()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Wait for the background L1 fills started so far."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
