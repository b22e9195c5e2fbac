"""Freshness for rows the Context-API did not write: PostgreSQL announces RemediationRequest changes and
every replica invalidates the answers they touch.

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

from kubernaut.contextapi.cache import TieredCache
from kubernaut.contextapi.metrics import Origin
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
    """LISTENs on ``kubernaut_requests`` and invalidates the cached answers each notified change touches."""

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
        self._dirty = asyncio.Event()
        self._resynced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False

    async def start(self, wait_s: float) -> None:
        """Start listening; wait up to ``wait_s`` for the first connection's resync, so answers cached
        before this replica started are not served (PostgreSQL being away does not stop the start)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="context-api-request-listener"),
            asyncio.create_task(self._apply(), name="context-api-request-invalidator"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._resynced.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        self._dirty.set()

    async def _apply(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            everything, tags = self._everything, self._tags
            self._everything, self._tags = False, set()
            if self._before is not None:
                await self._before()  # e.g. the standby fence: a refill must see the change
            if everything:
                await self._cache.invalidate_everything(Origin.POSTGRES)
            elif tags:
                await self._cache.invalidate(sorted(tags), Origin.POSTGRES)

    # -- the connection ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = _BACKOFF_FIRST_S
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._timeout_s,
                    server_settings={"application_name": "kubernaut-context-api-listener"},
                )
            except STORE_ERRORS as err:
                if delay == _BACKOFF_FIRST_S:
                    log.warning(
                        "request notifications: cannot connect to PostgreSQL; retrying", error=repr(err)
                    )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            delay = _BACKOFF_FIRST_S
            try:
                await self._serve(conn)
            except STORE_ERRORS as err:
                log.warning("request notifications: connection lost; reconnecting", error=repr(err))
            finally:
                self.listening = False
                conn.terminate()

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
