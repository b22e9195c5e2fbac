"""What the cache tiers report, as an interface: the tiers call an observer and never import the metrics
module, which implements it (``ContextApiMetrics``). Keeps ``cache`` free of back-arrows into the app."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from kubernaut.contextapi.cache.breaker import BreakerState


class Origin(StrEnum):
    """Who reported a change: the ``origin`` label of context_api_invalidations_total."""

    LOCAL = "local"  # this replica recorded it
    POSTGRES = "postgres"  # PostgreSQL announced it (e.g. a request the gateway wrote)


class CacheObserver(Protocol):
    """Receives the cache's events (hits and misses per tier, collapsed loads, invalidations, breaker)."""

    def hit(self, tier: str) -> None: ...

    def miss(self, tier: str) -> None: ...

    def collapsed(self) -> None:
        """A request waited for another request's load of the same key."""

    def invalidated(self, origin: Origin) -> None: ...

    def breaker_changed(self, state: BreakerState) -> None: ...
