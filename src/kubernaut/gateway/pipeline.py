"""One webhook through the gateway: one Redis call, PostgreSQL only for what is new, then the answer."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernaut.config import GatewaySettings
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.problems import Problem, unavailable
from kubernaut.gateway.redis_state import INGEST, RedisState, RedisUnavailable
from kubernaut.gateway.signal import Signal, SourceType, environment, identity_digest, priority
from kubernaut.gateway.store import NewRequest, RequestStore, StoreUnavailable, StormJoin, Written

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
        singles: dict[str, NewRequest] = {}
        storms: dict[str, StormJoin] = {}
        markers: dict[int, str] = {}  # signal index -> pending dedup marker to bind
        storm_of: dict[int, str] = {}  # signal index -> storm fingerprint
        resolves: list[str] = []
        envs = self._settings.environments
        for i, s in enumerate(signals):
            code, value = int(reply[2 + 2 * i]), reply[3 + 2 * i]
            if code == _DUPLICATE:
                outcomes.append(Outcome(s.fingerprint, "duplicate", int(value)))
                continue
            outcomes.append(Outcome(s.fingerprint, "resolved" if code == _RESOLVED else "", None))
            if code == _RESOLVED:
                if value:
                    outcomes[-1].request_id = int(value)
                resolves.append(s.fingerprint)
            elif code == _SINGLE:
                markers[i] = _text(value)
                if s.fingerprint in singles:
                    singles[s.fingerprint].occurrences += 1
                else:
                    env = environment(s.namespace, envs)
                    singles[s.fingerprint] = NewRequest(s, env, priority(s.severity, env))
            else:
                markers[i] = marker = _text(value)
                start, storm_type = marker.split(":")[2:4]
                sfp = storm_fingerprint(storm_type, s.name, s.namespace, int(start))
                storm = storms.get(sfp)
                if storm is None:
                    env = environment(s.namespace, envs)
                    storm = storms[sfp] = StormJoin(
                        sfp,
                        storm_type,
                        datetime.fromtimestamp(int(start) / 1000, UTC),
                        s,
                        env,
                        priority(s.severity, env),
                    )
                storm.members.setdefault(s.fingerprint, s)
                storm.occurrences += 1
                storm_of[i] = sfp

        if singles or storms or resolves:
            try:
                written = await self._store.write(
                    signal_type=source_type,
                    source=source,
                    now=datetime.now(UTC),
                    singles=list(singles.values()),
                    storms=list(storms.values()),
                    resolves=resolves,
                )
            except StoreUnavailable:
                raise self._unavailable("PostgreSQL did not take the write") from None
            self._settle(signals, outcomes, written, storms, storm_of, markers)

        return self._count(outcomes, source_type), outcomes

    def _settle(
        self,
        signals: Sequence[Signal],
        outcomes: list[Outcome],
        written: Written,
        storms: dict[str, StormJoin],
        storm_of: dict[int, str],
        markers: dict[int, str],
    ) -> None:
        """Name each PostgreSQL-decided outcome and queue the dedup bindings."""
        seen: set[str] = set()
        for i, (s, out) in enumerate(zip(signals, outcomes, strict=True)):
            if out.outcome == "resolved":
                out.request_id = written.resolved.get(s.fingerprint, out.request_id)
                continue
            if out.outcome:
                continue
            first = s.fingerprint not in seen
            seen.add(s.fingerprint)
            if i in storm_of:
                rid, _inserted, added = written.storms[storm_of[i]]
                out.outcome = "storm_aggregated" if first and s.fingerprint in added else "duplicate"
            else:
                rid, inserted = written.singles[s.fingerprint]
                out.outcome = "created" if first and inserted else "duplicate"
            out.request_id = rid
            if first:
                self._redis.bind_later(s.fingerprint, markers[i], rid)
        for sfp, (_rid, inserted, added) in written.storms.items():
            self._metrics.alerts_aggregated.inc(len(added))
            if inserted:
                self._metrics.requests_created.labels(kind="storm").inc()
                self._metrics.storms_detected.labels(storm_type=storms[sfp].storm_type).inc()
                # The first signal this webhook added to the new window is the one that opened it.
                for i, out in enumerate(outcomes):
                    if storm_of.get(i) == sfp and out.outcome == "storm_aggregated":
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
