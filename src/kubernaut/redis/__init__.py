"""Redis access shared by both services: clients (standalone or Sentinel) and the ownership guard."""

from kubernaut.redis.connection import RedisHandle, connect
from kubernaut.redis.ownership import OwnershipError, claim_ownership

__all__ = ["OwnershipError", "RedisHandle", "claim_ownership", "connect"]
