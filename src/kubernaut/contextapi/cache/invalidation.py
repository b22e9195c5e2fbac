"""Cross-replica invalidation: every replica subscribes to one channel on the Context-API's Redis and
invalidates the L2 entries of the tags another replica invalidated.

A message is ``{"origin": <replica id>, "tags": [...]}``; a replica skips its own (already applied). Each
(re)subscription invalidates all of L2, because messages sent while this replica was not subscribed are
lost; while Redis is away, the L2 TTL bounds staleness instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson
import structlog
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from kubernaut.contextapi.cache.l1 import RedisTier
    from kubernaut.contextapi.cache.l2 import LocalCache

log = structlog.get_logger(__name__)
_RESUBSCRIBE_PAUSE_S = 0.2


def encode(origin: str, tags: Sequence[str]) -> bytes:
    return orjson.dumps({"origin": origin, "tags": list(tags)})


def decode(data: bytes) -> tuple[str, list[str]] | None:
    try:
        msg = orjson.loads(data)
        origin, tags = msg["origin"], msg["tags"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(origin, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return origin, tags


class InvalidationListener:
    """The Redis pub/sub subscription that applies other replicas' tag invalidations to this replica's L2."""

    def __init__(self, l1: RedisTier, l2: LocalCache, on_remote: Callable[[], None]) -> None:
        self._l1 = l1
        self._l2 = l2
        self._on_remote = on_remote
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="context-api-invalidation-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._l1.wait_available()
            pubsub = self._l1.client.pubsub()
            try:
                await pubsub.subscribe(self._l1.channel)
                self._l2.invalidate_all()
                while True:
                    # Blocks without the socket timeout: a quiet channel is not a failure.
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if msg is not None and msg.get("type") == "message":
                        self._apply(msg["data"])
            except (RedisError, OSError) as err:
                self._l1.report_failure(err)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # Bounds the retry rate should subscribing fail while commands work (e.g. an ACL).
            await asyncio.sleep(_RESUBSCRIBE_PAUSE_S)

    def _apply(self, data: bytes) -> None:
        decoded = decode(data)
        if decoded is None:
            log.warning("ignoring malformed invalidation message", data=data[:200])
            return
        origin, tags = decoded
        if origin != self._l1.instance_id:
            self._l2.invalidate(tags)
            self._on_remote()
