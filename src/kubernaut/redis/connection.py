"""Build one Redis client per process from a service's ``redis`` section.

Standalone sections give a plain client; Sentinel sections give a client whose connection pool asks the
sentinels for the current master on every new connection, so nothing assumes a fixed master address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from kubernaut import tls
from kubernaut.config import SentinelRedis, StandaloneRedis


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if get is not None else None


@dataclass(frozen=True)
class RedisHandle:
    """The client a service uses, plus the Sentinel view when the section is a Sentinel group."""

    client: Redis
    sentinel: Sentinel | None
    settings: StandaloneRedis | SentinelRedis

    def describe(self) -> str:
        return self.settings.describe()

    async def master_address(self) -> tuple[str, int] | None:
        """The address the client writes to (asked from Sentinel for a group)."""
        if isinstance(self.settings, StandaloneRedis):
            return (self.settings.host, self.settings.port)
        assert self.sentinel is not None
        host, port = await self.sentinel.discover_master(self.settings.master_name)
        return (str(host), int(port))

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for s in self.sentinel.sentinels:
                await s.aclose()


class _MappedSentinel(Sentinel):
    """Connects to the master Sentinel names through ``address_map`` (e.g. a TCP proxy in the local
    stack's chaos drills), while Sentinel itself still judges the node directly."""

    def __init__(
        self, *args: Any, address_map: dict[tuple[str, int], tuple[str, int]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._address_map = address_map

    async def discover_master(self, service_name: str) -> Any:
        address = await super().discover_master(service_name)
        return self._address_map.get((str(address[0]), int(address[1])), address)


def no_retry() -> Retry:
    """redis-py retries failed commands with exponential backoff by default (seconds of hidden delay);
    the services decide themselves when and how long to retry."""
    return Retry(NoBackoff(), 0)


def _sentinel_options(settings: SentinelRedis) -> dict[str, Any]:
    """How to reach and log in to one of the group's Sentinels (not its Redis nodes)."""
    return {
        "username": settings.sentinel_username,
        "password": _secret(settings.sentinel_password),
        "socket_connect_timeout": settings.timeouts.connect_s,
        "retry": no_retry(),
        **tls.redis_options(settings.tls),
    }


def sentinel_client(
    settings: SentinelRedis, host: str, port: int, *, socket_timeout_s: float | None, decode: bool = False
) -> Redis:
    """A client of the one Sentinel at ``host:port`` (its events, its view of the group)."""
    return Redis(
        host=host,
        port=port,
        socket_timeout=socket_timeout_s,
        decode_responses=decode,
        **_sentinel_options(settings),
    )


def connect(settings: StandaloneRedis | SentinelRedis, *, client_name: str) -> RedisHandle:
    """Create the process's client. No I/O happens here: connections open on first use."""
    t = settings.timeouts
    common = {
        "retry": no_retry(),
        "db": settings.db,
        "username": settings.username,
        "password": _secret(settings.password),
        "socket_connect_timeout": t.connect_s,
        "socket_timeout": t.socket_s,
        "client_name": client_name,
        "health_check_interval": 0,
        **tls.redis_options(settings.tls),
    }
    if isinstance(settings, StandaloneRedis):
        client = Redis(host=settings.host, port=settings.port, **common)
        return RedisHandle(client=client, sentinel=None, settings=settings)
    sentinel = _MappedSentinel(
        settings.sentinel_addresses(),
        address_map=settings.mapped_addresses(),
        sentinel_kwargs={**_sentinel_options(settings), "socket_timeout": t.socket_s},
        **common,
    )
    client = sentinel.master_for(settings.master_name)
    return RedisHandle(client=client, sentinel=sentinel, settings=settings)
