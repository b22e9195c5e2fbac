"""One webhook through the gateway: decode -> plan -> write -> settle. One Redis call (the ingest script,
spoken through ingest_protocol), PostgreSQL only for what is new (planned and settled by the pure
ingest_plan), then the answer."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from kubernaut.background import Worker
from kubernaut.config import GatewaySettings
from kubernaut.gateway import ingest_protocol as protocol
from kubernaut.gateway.ingest_plan import Outcome, Plan, plan, settle, storm_fingerprint
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.redis_state import INGEST, RedisState, RedisUnavailable, Script
from kubernaut.gateway.signal import NormalizedSignal, SourceType
from kubernaut.gateway.store import RequestStore, StoreUnavailable, Written
from kubernaut.problems import Problem, unavailable

__all__ = ["Outcome", "Pipeline", "storm_fingerprint"]

log = structlog.get_logger("kubernaut.gateway.pipeline")

# Takes counts back; running it twice is harmless.
VOID = Script.load("void", replicate=True, repeatable=True, uses=("counts_hash",))
# How long a refused ingest call is voided for: the ingest script's RAN_TTL covers it; a hung master runs
# a buffered call when it resumes, well within this (Sentinel fails it over after down-after).
_VOID_FOR_S, _VOID_TTL_S, _VOID_RETRY_S = 30.0, 60, 0.25
# A void that ran on a master about to be deposed is lost with it, while the replica promoted in its place
# may hold what the refused call counted (it got the call, not the void). So every void is run again on
# each master the gateway finds while the call's record ('ran:<nonce>', the ingest script's RAN_TTL) lives.
_REVOID_FOR_S = 60.0
# Refused calls are recorded in PostgreSQL before the 503; every instance voids those of the others, so a
# refusing instance that dies (killed, or stopped by a rolling update) leaves no call unvoided. They look
# this often, well inside the minute in which a call's record ('ran:<nonce>') lets its void take it back.
_ADOPT_EVERY_S = 5.0
# How long a resolution waits for count batches to be flushed (its own process flushes at once, the others
# every count_flush_interval_s) before it is refused (503: the sender retries).
_AWAIT_BATCHES_S, _AWAIT_BATCHES_POLL_S = 10.0, 0.05


class Pipeline:
    """Takes one webhook's signals to their outcomes: rate limit, dedup, storms, PostgreSQL."""

    def __init__(
        self,
        settings: GatewaySettings,
        redis: RedisState,
        store: RequestStore,
        metrics: GatewayMetrics,
        flush_soon: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._flush_soon = flush_soon  # this process's count flusher, now
        self._redis = redis
        self._store = store
        self._metrics = metrics
        self._script_settings = protocol.settings_args(settings)
        # Call nonces: unique within the process by a counter, across processes by a random prefix (a
        # getrandom syscall per webhook cost more than the rest of making its nonce).
        self._nonce_prefix = os.urandom(8).hex()
        self._nonce_counter = itertools.count()
        self._voids: set[asyncio.Task[None]] = set()
        self._voided: dict[str, float] = {}  # nonce -> until when to void it again on a new master
        self._adopter = Worker(
            "gateway-refused-calls", self._adopt_refused, interval=_ADOPT_EVERY_S, first_wait=False
        )
        redis.on_master_change(self._void_again)

    def start(self) -> None:
        self._adopter.start()

    async def close(self) -> None:
        await self._adopter.stop(timeout_s=5.0)

    def _unavailable(self, what: str) -> Problem:
        return unavailable(what, self._settings.retry_after_s)

    async def ingest(
        self, signals: Sequence[NormalizedSignal], source_type: SourceType, source: str
    ) -> tuple[int, list[Outcome]]:
        """Process every signal; return the HTTP status (201 if anything was created, else 202) and
        each signal's outcome. Raises a Problem (429, 503) having accepted nothing that could be lost."""
        if not self._store.available:
            raise self._unavailable("PostgreSQL is unavailable")
        counted_in_redis = self._redis.counts_in_redis
        reply = await self._call_script(signals, source, counted_in_redis)
        received = datetime.now(UTC)
        planned = plan(signals, reply.entries, self._settings, received)
        if not planned.pending and counted_in_redis:  # duplicates and joins only: counted by the script
            outcomes = [planned.decided[i] for i in range(len(signals))]
            if planned.joined:
                self._metrics.tally.inc(self._metrics.alerts_aggregated, planned.joined)
            return self._count(outcomes, source_type), outcomes
        if reply.wait_for_batches:
            await self._await_batches(reply.wait_for_batches)
        try:
            written = await self._store.write_phases(
                signal_type=source_type,
                source=source,
                now=received,
                phases=planned.phases,
                counts=planned.counts,
            )
        except StoreUnavailable:
            raise self._unavailable("PostgreSQL did not take the write") from None
        outcomes, binds, storm_binds = settle(signals, planned, written)
        for b in binds:
            self._redis.bind_later(b.fingerprint, b.marker, b.request_id)
        if self._settings.storm.join_in_redis:
            for sb in storm_binds:
                self._redis.bind_storm_later(sb.name, sb.namespace, sb.start_ms, sb.request_id)
        self._count_storms(planned, written)
        return self._count(outcomes, source_type), outcomes

    async def _call_script(
        self, signals: Sequence[NormalizedSignal], source: str, count_duplicates: bool
    ) -> protocol.Reply:
        """The one Redis call: rate limit, dedup and storm bookkeeping (raises 429 or 503)."""
        nonce = f"{self._nonce_prefix}{next(self._nonce_counter):x}"
        args = protocol.encode(
            self._settings.key_prefix,
            nonce,
            source,
            self._script_settings,
            signals,
            count_duplicates=count_duplicates,
        )
        try:
            reply = protocol.decode(await self._redis.run(INGEST, args), len(signals))
        except RedisUnavailable:
            self._void_later(nonce)  # the call may still run (a hung master): it must count nothing
            await self._record_refused(nonce)
            raise self._unavailable("the Redis master is unavailable (failover in progress?)") from None
        if reply.limit is protocol.Limit.ENFORCED:
            self._metrics.rate_limited_children["enforce"].inc()
            retry_after = max(1, math.ceil(reply.retry_after_ms / 1000))
            raise Problem(
                429,
                "rate-limited",
                f"source {source!r} is over its rate limit; retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        if reply.limit is protocol.Limit.SHADOW:
            self._metrics.tally.inc(self._metrics.rate_limited_children["shadow"])
        return reply

    async def _await_batches(self, batches: frozenset[str]) -> None:
        """Before a resolution that unbound a storm is written: wait until the count batches that may
        hold members joined to it in Redis are in PostgreSQL (scripts/ingest.lua, "Bound storms"), so
        that a storm closes only once every member it answered for is stored. 503 if they are not soon."""
        deadline = time.monotonic() + _AWAIT_BATCHES_S
        pending = sorted(batches)
        while True:
            self._flush_soon()  # what this process took is acknowledged by its next step
            try:
                if await self._redis.batches_alive(pending) == 0:
                    return
            except RedisUnavailable:
                pass
            if time.monotonic() >= deadline:
                raise self._unavailable("storm members counted in Redis are not yet in PostgreSQL")
            await asyncio.sleep(_AWAIT_BATCHES_POLL_S)

    def _void_later(self, nonce: str, for_s: float = _REVOID_FOR_S) -> None:
        self._forget_old_voids()
        self._voided[nonce] = time.monotonic() + for_s
        self._start_void(nonce)

    def _forget_old_voids(self) -> None:
        now = time.monotonic()
        self._voided = {nonce: until for nonce, until in self._voided.items() if until > now}

    async def _record_refused(self, nonce: str) -> None:
        try:
            await self._store.record_refused(nonce, self._settings.key_prefix)
        except StoreUnavailable:
            log.warning("a refused webhook's call is voided by this process only", nonce=nonce)

    async def _adopt_refused(self) -> None:
        """Void the calls other instances refused (what this one refused it voids already)."""
        try:
            within = timedelta(seconds=_REVOID_FOR_S)
            recent = await self._store.recent_refused(self._settings.key_prefix, within)
        except StoreUnavailable:
            return
        # Not its own (voided already; past its minute here, it may still be just inside it in PostgreSQL).
        adopted = [(n, age) for n, age in recent if n not in self._voided and age < _REVOID_FOR_S - 1]
        if adopted:
            log.info("voiding calls other gateway instances refused", calls=len(adopted))
        for nonce, age in adopted:
            self._void_later(nonce, for_s=_REVOID_FOR_S - age)

    def _start_void(self, nonce: str) -> None:
        task = asyncio.create_task(self._void(nonce))
        self._voids.add(task)
        task.add_done_callback(self._voids.discard)

    def _void_again(self) -> None:
        """On a new master: void again every call voided recently, even one whose void is still running
        (it may have just run on the old master). scripts/void.lua does nothing where the void already is."""
        self._forget_old_voids()
        if self._voided:
            log.warning("voiding refused webhooks' calls again on the new master", calls=len(self._voided))
        for nonce in self._voided:
            self._start_void(nonce)

    async def _void(self, nonce: str) -> None:
        """Void a refused ingest call (scripts/void.lua), retrying while the master is away."""
        deadline = time.monotonic() + _VOID_FOR_S
        while True:
            try:
                undone = await self._redis.run(VOID, [self._settings.key_prefix, nonce, _VOID_TTL_S])
            except RedisUnavailable:
                if time.monotonic() >= deadline:
                    self._metrics.voids.labels(result="failed").inc()
                    log.error("could not void a refused webhook's Redis call; it may count", nonce=nonce)
                    return
                await asyncio.sleep(_VOID_RETRY_S)
                continue
            self._metrics.voids.labels(result="took_back" if undone else "nothing").inc()
            if undone:
                log.warning("took back the counts of a refused webhook", nonce=nonce, occurrences=undone)
            return

    def _count_storms(self, planned: Plan, written: Sequence[Written]) -> None:
        for k, phase in enumerate(planned.phases):
            for sfp, (_rid, inserted, added) in written[k].storms.items():
                self._metrics.tally.inc(self._metrics.alerts_aggregated, len(added))
                if inserted:
                    self._metrics.requests_created.labels(kind="storm").inc()
                    self._metrics.storms_detected.labels(storm_type=phase.storms[sfp].storm_type).inc()

    def _count(self, outcomes: Sequence[Outcome], source_type: SourceType) -> int:
        tally: dict[str, int] = {}
        for out in outcomes:
            tally[out.outcome] = tally.get(out.outcome, 0) + 1
        children, held = self._metrics.signal_children, self._metrics.tally
        for outcome, n in tally.items():
            held.inc(children[(source_type, outcome)], n)
        created = tally.get("created", 0)
        if created:
            held.inc(self._metrics.requests_created_single, created)
        return 201 if created or tally.get("storm_opened") else 202
