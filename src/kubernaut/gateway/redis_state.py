"""The gateway's shared state in its Redis HA group: scripts, failover handling, the one round trip.

Every call goes to the master Sentinel names. redis-py's own retries are off (``connect``): they reconnect to
the address they had (redis-py #3874) and hide how long a failover takes. Instead each call is retried
here, on a fresh pool connection (which asks Sentinel for the master), within the configured budget;
``+switch-master`` on any sentinel drops every pooled connection at once and wakes waiting retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import hiredis
import structlog
from redis.exceptions import (
    BusyLoadingError,
    MasterDownError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kubernaut.background import Worker
from kubernaut.config import GatewaySettings, SentinelRedis
from kubernaut.gateway import ingest_protocol as protocol
from kubernaut.gateway.autopipeline import AutoPipeline, Unanswered
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.redis import claim_ownership, connect
from kubernaut.redis.connection import sentinel_client
from kubernaut.redis.keys import GATEWAY

log = structlog.get_logger("kubernaut.gateway.redis")

# Error replies meaning "this node cannot take the write now", not a bug in the call. redis-py maps
# most to classes (dropping the prefix from the message); NOREPLICAS stays a plain ResponseError.
_TRANSIENT_REPLIES: tuple[tuple[type[ResponseError], str], ...] = (
    (ReadOnlyError, "readonly"),
    (MasterDownError, "masterdown"),
    (TryAgainError, "tryagain"),
)
_RETRY_INTERVAL_S = 0.05
# A flushing instance silent for this long is presumed dead; its unflushed batch is merged back.
_FLUSHER_STALE_MS = 30_000
_MAX_BIND_TRIPLES = 1000
# WAIT's timeout for a replica to acknowledge a counting call: a share of socket_s, so that the WAIT ends
# inside the call's own timeout (connect_s + socket_s).
_REPLICA_WAIT_SHARE = 0.5
# After a failed call or a master change, duplicates are counted in PostgreSQL (with the webhook's commit)
# rather than in Redis, and no count is taken from Redis, for this long. A master that hung past Sentinel's
# down-after and resumes before its replacement is announced still takes writes, and WAIT is still
# satisfied by the replica that Sentinel is about to point at the new master: whatever it runs then is gone
# after the switch. Counts acknowledged there would be lost; a refused call it runs late (and whose void
# runs after a take) would be flushed to PostgreSQL from that doomed copy while the void dies with it.
# The gateway saw its calls fail while the master hung, and the announcement comes within seconds of the
# resumption: until then nothing of that master's counts reaches PostgreSQL.
_DOUBT_S = 15.0
_WATCH_TIMEOUT_S = 1.0
_WATCH_RETRY_S = 1.0  # between a sentinel watcher's lost connection and the next one


class RedisUnavailable(Exception):
    """No master answered within the failover budget."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"Redis master unavailable ({kind})")
        self.kind = kind


@dataclass(frozen=True)
class Script:
    """A Lua script. ``replicate``: its reply counts only once a replica has its writes (so a master
    kill cannot take back what the caller acknowledged). ``repeatable``: running it twice does no harm,
    so a call whose reply was lost may be sent again; otherwise only calls that provably did not run are
    retried (refused up front, or never sent)."""

    name: str
    source: bytes
    sha: str
    replicate: bool
    repeatable: bool

    @classmethod
    def load(cls, name: str, *, replicate: bool, repeatable: bool, uses: tuple[str, ...] = ()) -> Script:
        """``uses``: shared Lua files (scripts/<name>.lua) put after the script's first line, its shebang."""
        scripts = resources.files("kubernaut.gateway") / "scripts"
        shebang, _, body = (scripts / f"{name}.lua").read_bytes().partition(b"\n")
        source = b"\n".join([shebang, *((scripts / f"{u}.lua").read_bytes() for u in uses), body])
        sha = hashlib.sha1(source).hexdigest()  # Redis names scripts by SHA-1
        return cls(name, source, sha, replicate, repeatable)


INGEST = Script.load("ingest", replicate=True, repeatable=False, uses=("counts_hash",))  # counts duplicates
BIND = Script.load("bind", replicate=False, repeatable=True)
TAKE_COUNTS = Script.load("take_counts", replicate=True, repeatable=True)
BATCHES_ALIVE = Script.load("batches_alive", replicate=False, repeatable=True)


def _error_kind(err: BaseException) -> str | None:
    """A short label for a failure that a failover explains, else None."""
    if isinstance(err, ResponseError):
        for cls, kind in _TRANSIENT_REPLIES:
            if isinstance(err, cls):
                return kind
        return "noreplicas" if str(err).startswith("NOREPLICAS") else None
    if isinstance(err, BusyLoadingError):
        return "loading"
    if isinstance(err, Unanswered):
        return "unanswered"
    if isinstance(err, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(err, RedisConnectionError | OSError):
        return "master_not_found" if type(err).__name__ == "MasterNotFoundError" else "connection"
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisState:
    """The gateway's state in its Redis HA group: scripts, the master Sentinel names, failover retries."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, instance_id: str) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.instance_id = instance_id
        self._metrics = metrics
        self.handle = connect(settings.redis, client_name="kubernaut-gateway")  # redis-py retries off
        self._pool = self.handle.client.connection_pool
        self._master: tuple[str, int] | None = None
        self._available = False
        self._switched = asyncio.Event()
        self._binds: list[str] = []
        self._storm_binds: list[str] = []
        self._binder = Worker("gateway-dedup-binder", self._bind_pending)
        self._watchers: list[Worker] = []
        self._closing = False
        self._doubted_until = 0.0
        self._master_change_listeners: list[Callable[[], None]] = []
        timeouts = settings.redis.timeouts
        # Only a Sentinel group has replicas to wait for; a standalone Redis (no failover) answers alone.
        self._replicas = isinstance(settings.redis, SentinelRedis)
        self._pipeline = AutoPipeline(
            self._pool,
            timeouts.connect_s + timeouts.socket_s,
            max(1, round(timeouts.socket_s * 1000 * _REPLICA_WAIT_SHARE)),
        )

    @property
    def available(self) -> bool:
        return self._available

    @property
    def counts_in_redis(self) -> bool:
        """Whether duplicates are counted in Redis now, by the ingest script, and taken from there by the
        count flusher (see ``_DOUBT_S``)."""
        return time.monotonic() >= self._doubted_until

    def on_master_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the gateway finds another master (``+switch-master``, or a call
        answered from another address), once its calls go to the new one."""
        self._master_change_listeners.append(listener)

    def _master_changed(self) -> None:
        self._metrics.redis_master_changes.inc()
        self._doubt("master changed")
        for listener in self._master_change_listeners:
            listener()

    def _doubt(self, why: str) -> None:
        if self.counts_in_redis:
            log.warning("counting duplicates in PostgreSQL, no count flush", why=why, seconds=_DOUBT_S)
        self._doubted_until = time.monotonic() + _DOUBT_S

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) for a master, claim it for the gateway, start the watchers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await claim_ownership(
                    self.handle.client,
                    GATEWAY,
                    where=self.handle.describe(),
                    allow_shared=self.settings.allow_shared_redis,
                )
                break
            except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as err:
                if _error_kind(err) is None or time.monotonic() >= deadline:
                    raise
                self._doubt("no master at start")  # a restart in the middle of a failover
                await asyncio.sleep(0.2)
        for script in (INGEST, BIND, TAKE_COUNTS, BATCHES_ALIVE):
            await self.handle.client.script_load(script.source)
        self._pipeline.start()
        self._set_available(True)
        if isinstance(self.settings.redis, SentinelRedis):
            for host, port in self.settings.redis.sentinel_addresses():
                watcher = Worker(
                    f"gateway-sentinel-watcher-{host}:{port}",
                    functools.partial(self._watch_sentinel, host, port),
                    interval=_WATCH_RETRY_S,
                    first_wait=False,
                )
                self._watchers.append(watcher)
                watcher.start()
        self._binder.start()

    async def close(self) -> None:
        self._closing = True
        # A cancel that lands as a read times out can be swallowed (asyncio.timeout in 3.11), so the
        # watchers also watch `_closing` and wake at least every _WATCH_TIMEOUT_S.
        await asyncio.gather(
            *(w.stop(timeout_s=2 * _WATCH_TIMEOUT_S) for w in (*self._watchers, self._binder))
        )
        await self._pipeline.close()
        await self.handle.aclose()

    # -- calls -------------------------------------------------------------------------------------

    async def run(self, script: Script, args: Sequence[str | bytes | int | float]) -> Any:
        """EVALSHA on the master; reload after NOSCRIPT; retry failover errors within the budget (see
        :class:`Script` for which). Raises RedisUnavailable("unreplicated") when a replicated script's
        writes reached no replica in time: they may be lost in a failover, so the caller must not
        acknowledge them."""
        deadline = time.monotonic() + self.settings.failover_retry_budget_s
        command = hiredis.pack_command(("EVALSHA", script.sha, 0, *args))  # type: ignore[arg-type]
        replicate = script.replicate and self._replicas
        while True:
            failure: BaseException
            try:
                reply = await self._pipeline.execute(command, replicate=replicate)
            except NoScriptError:
                try:
                    await self._load(script)  # a new master after failover, or SCRIPT FLUSH
                except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                    failure = err  # that master went away too: a failover error like any other
                else:
                    continue
            except ResponseError as err:
                if _error_kind(err) is None:
                    raise
                failure = err
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                failure = err
            else:
                if not self._available:
                    self._set_available(True)
                if self._pipeline.answered_by != self._master:
                    self._note_master()
                if not replicate:
                    return reply
                reply, replicas = reply
                if replicas < 1:
                    self._metrics.redis_errors.labels(kind="unreplicated").inc()
                    self._doubt("unreplicated")
                    raise RedisUnavailable("unreplicated")
                return reply
            kind = _error_kind(failure) or "connection"
            self._metrics.redis_errors.labels(kind=kind).inc()
            self._doubt(kind)
            if kind == "unanswered" and not script.repeatable:
                raise RedisUnavailable(kind)
            if self._available:
                self._set_available(False)
                log.warning("redis master unavailable", kind=kind, error=repr(failure))
                # Idle connections to a dead master would each fail in turn; in-flight ones fail alone.
                await self._drop_connections(idle_only=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RedisUnavailable(kind)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._switched.wait(), min(remaining, _RETRY_INTERVAL_S))

    async def _load(self, script: Script) -> None:
        await self._pipeline.execute(hiredis.pack_command(("SCRIPT", "LOAD", script.source)))  # type: ignore[arg-type]

    async def ping(self) -> bool:
        try:
            return bool(await self.handle.client.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
            return False

    # -- dedup bindings (after PostgreSQL committed) ----------------------------------------------

    def bind_later(self, fingerprint: str, marker: str, request_id: int) -> None:
        """Queue ``fingerprint -> request id``; a background task sends queued binds in one call.

        Losing a bind costs nothing but speed: the pending marker sends the next repeat to PostgreSQL.
        """
        self._binds.extend((fingerprint, marker, str(request_id)))
        self._binder.wake()

    def bind_storm_later(self, name: str, namespace: str, start_ms: int, request_id: int) -> None:
        """Queue binding a storm request to its window, so that its new members join it in Redis
        (scripts/ingest.lua, "Bound storms"). Losing it costs speed only: they join in PostgreSQL."""
        key = protocol.storm_group_key(self.prefix, name, namespace)
        self._storm_binds.extend((key, str(start_ms), str(request_id)))
        self._binder.wake()

    async def _bind_pending(self) -> None:
        while self._binds or self._storm_binds:
            storms = self._storm_binds[: 3 * _MAX_BIND_TRIPLES]
            del self._storm_binds[: len(storms)]
            batch = self._binds[: 3 * _MAX_BIND_TRIPLES]
            del self._binds[: len(batch)]
            with contextlib.suppress(RedisUnavailable):
                await self.run(BIND, [self.prefix, _FLUSHER_STALE_MS, len(storms) // 3, *storms, *batch])

    async def batches_alive(self, batches: Sequence[str]) -> int:
        """How many of these count batches are not yet written to PostgreSQL and acknowledged."""
        return int(await self.run(BATCHES_ALIVE, [self.prefix, *batches]))

    # -- duplicate counts --------------------------------------------------------------------------

    async def take_counts(
        self, ack: str | None, leave: bool = False, ack_only: bool = False
    ) -> tuple[int, str | None, protocol.CountBatch]:
        """Acknowledge batch ``ack`` (flushed), then return the open storm windows and this instance's
        batch to flush: its id (None: nothing to flush) and contents (duplicate counts, storm members
        joined in Redis, voided calls). The reply comes only once a replica holds the batch, so a failover
        cannot hand the same occurrences out again under another id. ``leave``: acknowledge, give any
        unflushed batch to the others; ``ack_only``: acknowledge, take nothing."""
        storms, batch, flat = await self.run(
            TAKE_COUNTS,
            [
                self.prefix,
                self.instance_id,
                ack or "",
                uuid.uuid4().hex,
                _FLUSHER_STALE_MS,
                "1" if leave else "",
                "1" if ack_only else "",
                "1" if self.settings.storm.join_in_redis else "",
            ],
        )
        return int(storms), (_text(batch) or None), protocol.count_batch(flat)

    # -- failover ----------------------------------------------------------------------------------

    def _set_available(self, value: bool) -> None:
        self._available = value
        self._metrics.redis_available.set(1 if value else 0)

    def _note_master(self) -> None:
        address = self._pipeline.answered_by
        if address is None:
            return
        old, self._master = self._master, address
        if old is not None and address != old:
            log.warning("redis master changed", old=old, new=address, seen_by="reconnect")
            self._master_changed()

    async def _drop_connections(self, idle_only: bool = False) -> None:
        with contextlib.suppress(Exception):
            await self._pool.disconnect(inuse_connections=not idle_only)

    async def _on_switch_master(self, payload: bytes | str) -> None:
        text = payload.decode() if isinstance(payload, bytes) else payload
        parts = text.split()
        assert isinstance(self.settings.redis, SentinelRedis)
        if len(parts) != 5 or parts[0] != self.settings.redis.master_name:
            return
        new = (parts[3], int(parts[4]))
        new = self.settings.redis.mapped_addresses().get(new, new)
        if new == self._master:
            return  # another sentinel told us first
        log.warning("redis master changed", old=self._master, new=new, seen_by="+switch-master")
        self._master = new
        await self._pipeline.reset()
        await self._drop_connections()
        self._master_changed()
        self._switched.set()
        self._switched = asyncio.Event()

    async def _watch_sentinel(self, host: str, port: int) -> None:
        """Follow ``+switch-master`` on one sentinel until the connection fails (its worker reconnects
        after a pause) or the gateway closes."""
        settings = self.settings.redis
        assert isinstance(settings, SentinelRedis)
        client = sentinel_client(settings, host, port, socket_timeout_s=None)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("+switch-master")
            while not self._closing:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_WATCH_TIMEOUT_S)
                if message is not None and message["type"] == "message":
                    await self._on_switch_master(message["data"])
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
