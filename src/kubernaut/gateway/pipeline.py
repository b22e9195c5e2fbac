"""One webhook through the gateway: one Redis call, PostgreSQL only for what is new, then the answer."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from kubernaut.config import GatewaySettings
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.problems import Problem, unavailable
from kubernaut.gateway.redis_state import INGEST, RedisState, RedisUnavailable, Script
from kubernaut.gateway.signal import Signal, SourceType, alert_time, environment, identity_digest, priority
from kubernaut.gateway.store import NewRequest, Phase, RequestStore, StoreUnavailable, StormJoin, Written

log = structlog.get_logger("kubernaut.gateway.pipeline")

VOID = Script.load("void", replicate=True, repeatable=True)  # takes counts back; twice is harmless
# How long a refused ingest call is voided for: the ingest script's RAN_TTL covers it; a hung master runs
# a buffered call when it resumes, well within this (Sentinel fails it over after down-after).
_VOID_FOR_S, _VOID_TTL_S, _VOID_RETRY_S = 30.0, 60, 0.25

# Codes of the ingest script's per-signal replies (scripts/ingest.lua).
_DUPLICATE, _SINGLE, _STORM, _RESOLVED = 0, 1, 2, 3
_LIMITED, _SHADOW_LIMITED = 1, 2
_RATE_LIMIT_MODES = {"off": 0, "enforce": 1, "shadow": 2}


@dataclass(slots=True)
class Outcome:
    fingerprint: str
    outcome: str
    request_id: int | None

    def as_json(self) -> dict[str, object]:
        return {"fingerprint": self.fingerprint, "outcome": self.outcome, "request_id": self.request_id}


def storm_fingerprint(storm_type: str, name: str, namespace: str, start_ms: int) -> str:
    """One aggregated request per storm window: the window's start makes it unique."""
    return identity_digest("storm", storm_type, name, namespace, str(start_ms))


def script_settings(settings: GatewaySettings) -> list[int]:
    """ARGV 4-14 of the ingest script (scripts/ingest.lua): rate-limit, dedup and storm settings."""
    rl, st = settings.rate_limit, settings.storm
    return [
        _RATE_LIMIT_MODES[rl.mode],
        round(1_000_000 / rl.requests_per_second),
        rl.burst,
        settings.dedup_ttl_s,
        1 if st.enabled else 0,
        st.rate_threshold,
        st.rate_window_s * 1000,
        st.pattern_threshold,
        st.pattern_window_s * 1000,
        st.inactivity_s * 1000,
        st.max_window_s * 1000,
    ]


def _period(marker: str) -> int:
    """The period in a pending marker 'p:<nonce>:<i>:<period>' (0 in a marker of an older release)."""
    parts = marker.split(":")
    return int(parts[3]) if len(parts) > 3 else 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Pipeline:
    def __init__(
        self, settings: GatewaySettings, redis: RedisState, store: RequestStore, metrics: GatewayMetrics
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._store = store
        self._metrics = metrics
        self._head_tail = script_settings(settings)
        self._voids: set[asyncio.Task[None]] = set()
        st = settings.storm
        self._lookback = {
            "rate": timedelta(seconds=st.rate_window_s),
            "pattern": timedelta(seconds=st.pattern_window_s),
        }

    def _unavailable(self, what: str) -> Problem:
        return unavailable(what, self._settings.retry_after_s)

    async def ingest(
        self, signals: Sequence[Signal], source_type: SourceType, source: str
    ) -> tuple[int, list[Outcome]]:
        """Process every signal; return the HTTP status (201 if anything was created, else 202) and
        each signal's outcome. Raises a Problem (429, 503) having accepted nothing that could be lost."""
        if not self._store.available:
            raise self._unavailable("PostgreSQL is unavailable")
        nonce = os.urandom(8).hex()
        args: list[str | int] = [self._settings.key_prefix, nonce, source, *self._head_tail, len(signals)]
        for s in signals:
            args += ("f" if s.firing else "r", s.fingerprint, s.name, s.namespace, s.resource)
        try:
            reply = await self._redis.run(INGEST, args)
        except RedisUnavailable:
            self._void_later(nonce)  # the call may still run (a hung master): it must count nothing
            raise self._unavailable("the Redis master is unavailable (failover in progress?)") from None

        if reply[0] == _LIMITED:
            self._metrics.rate_limited.labels(mode="enforce").inc()
            retry_after = max(1, math.ceil(int(reply[1]) / 1000))
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"source {source!r} is over its rate limit; retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        if reply[0] == _SHADOW_LIMITED:
            self._metrics.rate_limited.labels(mode="shadow").inc()

        outcomes: list[Outcome] = []
        phases: list[Phase] = [Phase()]
        where: dict[int, tuple[int, str | None]] = {}  # signal index -> (phase, storm fingerprint)
        markers: dict[int, str] = {}  # signal index -> pending dedup marker to bind
        counts: dict[int, int] = {}  # duplicates of known requests
        last_phase: dict[str, int] = {}  # fingerprint -> phase of its last signal
        resolved_after: set[tuple[int, str]] = set()  # (phase, fingerprint) closed at that phase's end
        envs = self._settings.environments
        received = datetime.now(UTC)
        # Where the script ordered this call among all calls (present when a signal goes to PostgreSQL).
        base = int(reply[2 + 2 * len(signals)]) if len(reply) > 2 + 2 * len(signals) else 0
        times = self._settings.alert_times
        skew, max_age = times.max_future_skew_s, times.max_age_s
        for i, s in enumerate(signals):
            code, value = int(reply[2 + 2 * i]), reply[3 + 2 * i]
            if code == _DUPLICATE:
                outcomes.append(Outcome(s.fingerprint, "duplicate", int(value)))
                counts[int(value)] = counts.get(int(value), 0) + 1
                continue
            if code != _RESOLVED and phases[-1].resolves:
                phases.append(Phase())  # a firing after a resolution: PostgreSQL must see them in order
            k, phase = len(phases) - 1, phases[-1]
            last_phase[s.fingerprint] = k
            outcomes.append(Outcome(s.fingerprint, "resolved" if code == _RESOLVED else "", None))
            if code == _RESOLVED:
                if value:
                    outcomes[-1].request_id = int(value)
                phase.resolves.setdefault(s.fingerprint, alert_time(s.ends_at, received, skew, max_age))
                phase.resolve_seqs.setdefault(s.fingerprint, base + i)
                resolved_after.add((k, s.fingerprint))
                where[i] = (k, None)
            elif code == _SINGLE:
                markers[i] = _text(value)
                where[i] = (k, None)
                if s.fingerprint in phase.singles:
                    phase.singles[s.fingerprint].occurrences += 1
                else:
                    env = environment(s.namespace, envs)
                    phase.singles[s.fingerprint] = NewRequest(
                        s,
                        env,
                        priority(s.severity, env),
                        1,
                        alert_time(s.starts_at, received, skew, max_age),
                        period=_period(markers[i]),
                        seq=base + i,
                    )
            else:
                markers[i] = marker = _text(value)
                start, storm_type = marker.split(":")[3:5]
                sfp = storm_fingerprint(storm_type, s.name, s.namespace, int(start))
                storm = phase.storms.get(sfp)
                if storm is None:
                    env = environment(s.namespace, envs)
                    storm = phase.storms[sfp] = StormJoin(
                        sfp,
                        storm_type,
                        datetime.fromtimestamp(int(start) / 1000, UTC),
                        s,
                        env,
                        priority(s.severity, env),
                        lookback=self._lookback[storm_type],
                    )
                storm.members.setdefault(s.fingerprint, s)
                storm.first_seen.setdefault(s.fingerprint, alert_time(s.starts_at, received, skew, max_age))
                storm.occurrences += 1
                where[i] = (k, sfp)

        if len(where) == 0:
            return self._count(outcomes, source_type), outcomes  # counted by the script itself
        try:
            written = await self._store.write_phases(
                signal_type=source_type, source=source, now=received, phases=phases, counts=counts
            )
        except StoreUnavailable:
            raise self._unavailable("PostgreSQL did not take the write") from None
        self._settle(signals, outcomes, written, phases, where, markers, last_phase, resolved_after)
        return self._count(outcomes, source_type), outcomes

    def _void_later(self, nonce: str) -> None:
        task = asyncio.create_task(self._void(nonce))
        self._voids.add(task)
        task.add_done_callback(self._voids.discard)

    async def _void(self, nonce: str) -> None:
        """Void a refused ingest call (scripts/void.lua), retrying while the master is away."""
        deadline = time.monotonic() + _VOID_FOR_S
        while True:
            try:
                undone = await self._redis.run(VOID, [self._settings.key_prefix, nonce, _VOID_TTL_S])
            except RedisUnavailable:
                if time.monotonic() >= deadline:
                    log.error("could not void a refused webhook's Redis call; it may count", nonce=nonce)
                    return
                await asyncio.sleep(_VOID_RETRY_S)
                continue
            if undone:
                log.warning("took back the counts of a refused webhook", nonce=nonce, occurrences=undone)
            return

    def _settle(
        self,
        signals: Sequence[Signal],
        outcomes: list[Outcome],
        written: list[Written],
        phases: list[Phase],
        where: dict[int, tuple[int, str | None]],
        markers: dict[int, str],
        last_phase: dict[str, int],
        resolved_after: set[tuple[int, str]],
    ) -> None:
        """Name each PostgreSQL-decided outcome and queue the dedup bindings: only for requests still
        open when the webhook ends (never bind a dedup entry to a request closed in the same webhook)."""
        seen: set[tuple[int, str] | tuple[int, str, str]] = set()
        for i, (s, out) in enumerate(zip(signals, outcomes, strict=True)):
            if i not in where:
                continue
            k, sfp = where[i]
            if out.outcome == "resolved":
                if (k, s.fingerprint, "r") not in seen:  # a second resolution in a row closes nothing
                    out.request_id = written[k].resolved.get(s.fingerprint, out.request_id)
                seen.add((k, s.fingerprint, "r"))
                continue
            first = (k, s.fingerprint) not in seen
            seen.add((k, s.fingerprint))
            if sfp is not None:
                rid, _inserted, added = written[k].storms[sfp]
                out.outcome = "storm_aggregated" if first and s.fingerprint in added else "duplicate"
            else:
                rid, inserted = written[k].singles[s.fingerprint]
                out.outcome = "created" if first and inserted else "duplicate"
            out.request_id = rid
            if first and last_phase[s.fingerprint] == k and (k, s.fingerprint) not in resolved_after:
                self._redis.bind_later(s.fingerprint, markers[i], rid)
        for k, phase in enumerate(phases):
            for sfp, (_rid, inserted, added) in written[k].storms.items():
                self._metrics.alerts_aggregated.inc(len(added))
                if inserted:
                    self._metrics.requests_created.labels(kind="storm").inc()
                    self._metrics.storms_detected.labels(storm_type=phase.storms[sfp].storm_type).inc()
                    # The first signal this webhook added to the new window is the one that opened it.
                    for i, out in enumerate(outcomes):
                        if where.get(i) == (k, sfp) and out.outcome == "storm_aggregated":
                            out.outcome = "storm_opened"
                            break

    def _count(self, outcomes: Sequence[Outcome], source_type: SourceType) -> int:
        tally: dict[str, int] = {}
        for out in outcomes:
            tally[out.outcome] = tally.get(out.outcome, 0) + 1
        children = self._metrics.signal_children
        for outcome, n in tally.items():
            children[(source_type, outcome)].inc(n)
        created = tally.get("created", 0)
        if created:
            self._metrics.requests_created.labels(kind="single").inc(created)
        return 201 if created or tally.get("storm_opened") else 202
