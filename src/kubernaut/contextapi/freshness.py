"""Freshness across replicas: PostgreSQL announces RemediationRequest changes (the gateway's and this
service's outcomes alike) and every replica invalidates the answers they touch. It is the only channel
between replicas (docs/context-api.md says why Redis pub/sub is not used).

Migration 010 makes PostgreSQL NOTIFY on ``kubernaut_requests`` when a request is created (``{"ns": ...}``)
or its phase or resolved_at changes (``{"id": ..., "ns": ...}``). Each replica holds one connection of
its own with LISTEN on that channel and invalidates, through the cache's tag machinery, the tags an
outcome recorded here would: ``incident:<id>``, ``ns:<namespace>`` and ``all``. Every replica hears every
notification, so each deletes the L1 entries itself (idempotent) and nothing goes out on Redis pub/sub.
Bursts are coalesced: the notifications that arrive while one invalidation runs make the next one.

A lost connection (PostgreSQL restarted, network) is re-opened with backoff. Notifications sent meanwhile
are lost, so every (re)connection, once LISTEN is in place, invalidates everything cached in L1 and in this
replica's L2; the first connection does the same, since L1 may hold answers from before this replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import structlog

from kubernaut.background import Worker
from kubernaut.contextapi.cache import TieredCache
from kubernaut.contextapi.cache.observer import Origin
from kubernaut.contextapi.params import ALL_TAG, incident_tag, namespace_tag
from kubernaut.contextapi.queries import STORE_ERRORS

log = structlog.get_logger(__name__)

CHANNEL = "kubernaut_requests"  # the channel of migration 010's trigger functions
_HEARTBEAT_S = 5.0  # a peer that vanished without closing the socket shows up at the next heartbeat
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


def tags_for(payload: str) -> list[str] | None:
    """The tags a notification touches; None for a payload this code cannot read (invalidate everything).

    A payload without ``ns`` comes from a namespace too long for a notification: it cannot be a
    ``namespace`` filter (those are DNS labels), so only ``all`` answers can hold it."""
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    tags = [ALL_TAG]
    incident, namespace = msg.get("id"), msg.get("ns")
    if incident is not None:
        if type(incident) is not int:
            return None
        tags.append(incident_tag(incident))
    if namespace is not None:
        if not isinstance(namespace, str):
            return None
        tags.append(namespace_tag(namespace))
    return tags


class RequestChangeListener:
    """LISTENs to PostgreSQL's request notifications and invalidates the cached answers they touch."""

    def __init__(
        self,
        dsn: str,
        cache: TieredCache,
        *,
        timeout_s: float,
        before_invalidate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._dsn = dsn
        self._before = before_invalidate
        self._cache = cache
        self._timeout_s = timeout_s
        self._tags: set[str] = set()
        self._everything = False
        self._resynced = asyncio.Event()
        self._delay = _BACKOFF_FIRST_S
        self._wait_s = 0.0  # before the next connection attempt
        self._listener = Worker(
            "context-api-request-listener", self._session, interval=lambda: self._wait_s, first_wait=False
        )
        self._invalidator = Worker("context-api-request-invalidator", self._apply)
        self.listening = False

    async def start(self, wait_s: float) -> None:
        """Start listening; wait up to ``wait_s`` for the first connection's resync, so answers cached
        before this replica started are not served (PostgreSQL being away does not stop the start)."""
        self._invalidator.start()
        self._listener.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._resynced.wait()

    async def stop(self) -> None:
        await self._listener.stop()
        await self._invalidator.stop()

    # -- notifications -> invalidations --------------------------------------------------------------

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        tags = tags_for(payload) if isinstance(payload, str) else None
        if tags is None:
            log.warning(
                "unreadable request notification; invalidating everything cached", payload=str(payload)[:200]
            )
            self._everything = True
        else:
            self._tags.update(tags)
        self._invalidator.wake()

    async def _apply(self) -> None:
        everything, tags = self._everything, self._tags
        self._everything, self._tags = False, set()
        if self._before is not None:
            await self._before()  # e.g. the standby fence: a refill must see the change
        if everything:
            await self._cache.invalidate_everything(Origin.POSTGRES)
        elif tags:
            await self._cache.invalidate(sorted(tags), Origin.POSTGRES)

    # -- the connection ------------------------------------------------------------------------------

    async def _session(self) -> None:
        """One connection, held until it is lost; the next one follows at once, or after a backoff when
        connecting failed."""
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout_s,
                server_settings={"application_name": "kubernaut-context-api-listener"},
            )
        except STORE_ERRORS as err:
            if self._delay == _BACKOFF_FIRST_S:
                log.warning("request notifications: cannot connect to PostgreSQL; retrying", error=repr(err))
            self._wait_s = self._delay * random.uniform(0.5, 1.0)
            self._delay = min(self._delay * 2, _BACKOFF_MAX_S)
            return
        self._delay = _BACKOFF_FIRST_S
        self._wait_s = _BACKOFF_MAX_S  # kept only if the session ends in an unexpected error
        try:
            await self._serve(conn)
        except STORE_ERRORS as err:
            log.warning("request notifications: connection lost; reconnecting", error=repr(err))
        finally:
            self.listening = False
            conn.terminate()
        self._wait_s = 0.0

    async def _serve(self, conn: asyncpg.Connection) -> None:
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        # Whatever was committed before LISTEN took effect was never announced to this replica.
        if self._before is not None:
            await self._before()
        await self._cache.invalidate_everything(Origin.POSTGRES)
        self.listening = True
        self._resynced.set()
        log.info("request notifications: listening", channel=CHANNEL)
        while True:
            try:
                await asyncio.wait_for(closed.wait(), timeout=_HEARTBEAT_S)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=self._timeout_s)
            else:
                log.warning("request notifications: connection closed; reconnecting")
                return
