"""The Context-API's cache tiers: L1 Redis, L2 in-process, L3 the loader (PostgreSQL)."""

from kubernaut.contextapi.cache.tiered import Tier, TieredCache

__all__ = ["Tier", "TieredCache"]
