"""The ownership guard: each service marks the Redis it uses and refuses one marked by the other."""

from __future__ import annotations

from redis.asyncio import Redis

from kubernaut.redis.keys import OWNER_KEY, SHARERS_KEY


class OwnershipError(RuntimeError):
    """The Redis instance belongs to another service and sharing was not allowed."""


async def claim_ownership(client: Redis, service: str, *, where: str, allow_shared: bool) -> str:
    """Mark the instance as ``service``'s unless already marked; return the owner.

    Raises :class:`OwnershipError` when another service owns it and ``allow_shared`` is false. A shared
    instance records every sharing service in a set so operators can see who is on it.
    """
    await client.set(OWNER_KEY, service, nx=True)
    owner_raw = await client.get(OWNER_KEY)
    owner = owner_raw.decode() if isinstance(owner_raw, bytes) else str(owner_raw)
    if owner != service:
        if not allow_shared:
            raise OwnershipError(
                f"{service} refuses to use {where}: that Redis is owned by {owner}. "
                f"Point {service} at its own Redis, or set allow_shared_redis: true to share it knowingly."
            )
        await client.sadd(SHARERS_KEY, service)
    return owner
