"""L1: the Context-API's own Redis, shared by every replica.

Entries live under ``<prefix>c:<key>`` with the L1 TTL; each tag is a set ``<prefix>t:<tag>`` of entry keys.
A Redis-side generation counter (``<prefix>gen``) closes the race between a slow loader and an
invalidation: a fill is stored only if no invalidation ran since the loader's miss.

Every call is bounded by the tight Redis timeouts and goes through the circuit breaker; the first failure
stops request traffic to Redis and a background prober takes over. A probe re-claims ownership (so a
restarted or replaced server is never used before it is known to be ours) and replays the invalidations
recorded while Redis was away, before requests use Redis again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import uuid
from collections.abc import Iterable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kubernaut.contextapi.cache.breaker import BreakerState, CircuitBreaker
from kubernaut.contextapi.cache.invalidation import encode
from kubernaut.contextapi.metrics import ContextApiMetrics
from kubernaut.redis import OwnershipError, claim_ownership
from kubernaut.redis.keys import CONTEXT_API

log = structlog.get_logger(__name__)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
_REPLAY_BATCH = 500

_SET_IF_CURRENT = """
-- KEYS: generation, entry, tag sets...; ARGV: expected generation, value, ttl
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[2])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 1
"""

_INVALIDATE = """
-- KEYS: generation, tag sets...; ARGV: channel, message ('' = tell no other replica)
local removed = 0
for i = 2, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 1000 do
    removed = removed + redis.call('UNLINK', unpack(members, j, math.min(j + 999, #members)))
  end
  redis.call('DEL', KEYS[i])
end
redis.call('INCR', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return removed
"""


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


class RedisTier:
    """L1: cached answers and their tag sets in the Context-API's Redis, behind the circuit breaker."""

    def __init__(
        self,
        client: Redis,
        *,
        where: str,
        prefix: str,
        ttl_s: int,
        max_value_bytes: int,
        op_timeout_s: float,
        failure_threshold: int,
        reset_timeout_s: float,
        allow_shared: bool,
        metrics: ContextApiMetrics,
    ) -> None:
        self.client = client
        self.instance_id = uuid.uuid4().hex
        self.channel = f"{prefix}invalidations"
        self._where = where
        self._prefix = prefix
        self._generation_key = f"{prefix}gen"
        self._ttl_s = ttl_s
        self._max_value_bytes = max_value_bytes
        self._op_timeout_s = op_timeout_s
        self._allow_shared = allow_shared
        self._metrics = metrics
        self._available = asyncio.Event()
        self._trouble = asyncio.Event()
        # Invalidations Redis has not taken yet: tag -> whether other replicas must be told (pub/sub).
        self._pending: dict[str, bool] = {}
        # Drop every entry before L1 is used again (PostgreSQL notifications may have been missed).
        self._pending_everything = False
        self._set_if_current = client.register_script(_SET_IF_CURRENT)
        self._invalidate = client.register_script(_INVALIDATE)
        self._supervisor: asyncio.Task[None] | None = None
        # Unverified until the first probe: nothing is read from or written to an unchecked server.
        self.breaker = CircuitBreaker(
            failure_threshold, reset_timeout_s, on_change=self._on_state, state=BreakerState.HALF_OPEN
        )

    # -- state ---------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.breaker.closed

    async def wait_available(self) -> None:
        await self._available.wait()

    def _on_state(self, state: BreakerState) -> None:
        self._metrics.set_breaker(state)
        self._metrics.l1_available.set(1 if state is BreakerState.CLOSED else 0)
        if state is BreakerState.CLOSED:
            self._trouble.clear()
            self._available.set()
        else:
            self._available.clear()
            self._trouble.set()

    def report_failure(self, err: BaseException) -> None:
        """A request or the listener failed on Redis: stop using it and let the prober take over."""
        if self.breaker.closed:
            log.warning(
                "context-api redis unavailable; serving from L2/L3", where=self._where, error=repr(err)
            )
            self.breaker.record_failure()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Probe once; a server owned by the gateway stops the start. Redis down is not an error."""
        try:
            await self._probe()
        except REDIS_ERRORS as err:
            log.warning("context-api redis unreachable at start; L1 off until it answers", error=repr(err))
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        self._supervisor = asyncio.create_task(self._supervise(), name="context-api-redis-prober")

    async def aclose(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def _probe(self) -> None:
        async with asyncio.timeout(self._op_timeout_s * 2):
            await claim_ownership(
                self.client, CONTEXT_API, where=self._where, allow_shared=self._allow_shared
            )
        await self._replay_pending()

    async def _supervise(self) -> None:
        while True:
            await self._trouble.wait()
            await asyncio.sleep(self.breaker.probe_delay())
            self.breaker.begin_probe()
            # Pooled connections may point at a dead or replaced server: none survives to serve requests.
            await self.client.connection_pool.disconnect()
            try:
                await self._probe()
            except OwnershipError as err:
                log.error("context-api keeps L1 off", error=str(err))
                self.breaker.trip()
            except REDIS_ERRORS:
                self.breaker.record_failure()
            else:
                log.info("context-api redis available again; L1 back on", where=self._where)
                self.breaker.record_success()

    # -- cache operations ----------------------------------------------------------------------------

    def _entry_key(self, key: str) -> str:
        return f"{self._prefix}c:{key}"

    def _tag_key(self, tag: str) -> str:
        return f"{self._prefix}t:{tag}"

    async def get(self, key: str) -> tuple[bytes | None, bytes | None]:
        """``(body, generation)``; body None on a miss; both None when Redis is not usable now."""
        if not self.available:
            return None, None
        try:
            async with asyncio.timeout(self._op_timeout_s):
                body, generation = await self.client.mget([self._entry_key(key), self._generation_key])
        except REDIS_ERRORS as err:
            self.report_failure(err)
            return None, None
        return _as_bytes(body), _as_bytes(generation) or b"0"

    async def put(self, key: str, body: bytes, tags: Iterable[str], generation: bytes) -> None:
        if not self.available or len(body) > self._max_value_bytes:
            return
        entry = self._entry_key(key)
        keys = [self._generation_key, entry, *(self._tag_key(t) for t in tags)]
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await self._set_if_current(keys=keys, args=[generation, body, self._ttl_s])
        except REDIS_ERRORS as err:
            self.report_failure(err)

    async def invalidate(self, tags: Iterable[str], *, announce: bool = True) -> None:
        """Drop the tagged entries on Redis and, with ``announce``, tell the other replicas (without it,
        each replica learns of the change itself). Replayed later if Redis is away."""
        for tag in tags:
            self._pending[tag] = self._pending.get(tag, False) or announce
        await self._replay_if_available()

    async def invalidate_everything(self) -> None:
        """Drop every entry: every tag set's members (each entry is in one). Not announced."""
        self._pending_everything = True
        await self._replay_if_available()

    async def _replay_if_available(self) -> None:
        if not self.available:
            return
        try:
            await self._replay_pending()
        except REDIS_ERRORS as err:
            self.report_failure(err)

    async def _all_tags(self) -> list[str]:
        tag_prefix = self._tag_key("")
        match = re.sub(r"([*?\[\]\\])", r"\\\1", tag_prefix) + "*"
        tags: list[str] = []
        cursor = 0
        while True:
            async with asyncio.timeout(self._op_timeout_s):
                cursor, keys = await self.client.scan(cursor, match=match, count=1000)
            for key in keys:
                name = key.decode() if isinstance(key, bytes) else key
                tags.append(name.removeprefix(tag_prefix))
            if cursor == 0:
                return tags

    async def _run_invalidate(self, tags: list[str], message: bytes) -> None:
        keys = [self._generation_key, *(self._tag_key(t) for t in tags)]
        async with asyncio.timeout(self._op_timeout_s):
            await self._invalidate(keys=keys, args=[self.channel, message])

    async def _replay_pending(self) -> None:
        """Run what is pending, in batches; whatever fails stays pending (merged with newer requests)."""
        if self._pending_everything:
            self._pending_everything = False
            try:
                # The generation goes up first: a fill landing after it is refused, one landing before
                # it is in a tag set the scan finds.
                await self._run_invalidate([], b"")
                tags = await self._all_tags()
            except BaseException:
                self._pending_everything = True
                raise
            for tag in tags:
                self._pending.setdefault(tag, False)
        while self._pending:
            batch = dict(itertools.islice(self._pending.items(), _REPLAY_BATCH))
            for tag in batch:
                del self._pending[tag]
            announced = [tag for tag, announce in batch.items() if announce]
            try:
                await self._run_invalidate(
                    list(batch), encode(self.instance_id, announced) if announced else b""
                )
            except BaseException:
                for tag, announce in batch.items():
                    self._pending[tag] = self._pending.get(tag, False) or announce
                raise
