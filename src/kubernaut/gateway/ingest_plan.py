"""The pure middle of one webhook: from the ingest script's answers to what PostgreSQL must write
(:func:`plan`), and from what PostgreSQL wrote to each signal's outcome and the dedup bindings
(:func:`settle`). No I/O: the pipeline does the calls around them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubernaut.config import GatewaySettings
from kubernaut.gateway.ingest_protocol import (
    DUPLICATE,
    JOINED,
    RESOLVED,
    SINGLE,
    STORM,
    Code,
    Entry,
    storm_window,
)
from kubernaut.gateway.signal import AlertTimes, NormalizedSignal, environment, identity_digest, priority
from kubernaut.gateway.store import NewRequest, Phase, StormJoin, Written


@functools.lru_cache(maxsize=1024)  # every new member of a window names it again
def storm_fingerprint(storm_type: str, name: str, namespace: str, start_ms: int) -> str:
    """One aggregated request per storm window: the window's start makes it unique."""
    return identity_digest("storm", storm_type, name, namespace, str(start_ms))


def _seq(entry: Entry) -> int:
    if entry.seq is None:
        raise ValueError(f"a {entry.code.name} entry without its place in Redis's order")
    return entry.seq


@dataclass(slots=True)
class Outcome:
    """One signal's answer in the HTTP response."""

    fingerprint: str
    outcome: str
    request_id: int | None

    def as_json(self) -> dict[str, object]:
        return {"fingerprint": self.fingerprint, "outcome": self.outcome, "request_id": self.request_id}


@dataclass(slots=True)  # not frozen: one per new signal, built four times faster
class Pending:
    """A signal whose outcome PostgreSQL decides."""

    index: int  # in the webhook
    phase: int
    code: Code  # SINGLE, STORM or RESOLVED
    storm: str | None  # the storm request's fingerprint (STORM)
    marker: str | None  # the dedup entry's pending marker (SINGLE, STORM)
    first: bool  # the first signal of its fingerprint (and kind: firing or resolved) in its phase
    bind: bool  # its dedup entry gets the request id once committed
    resolved_id: int | None  # RESOLVED: the id the dedup entry held


@dataclass(slots=True)
class Plan:
    """What to write: ``phases`` in order, the ``counts`` of duplicates of known requests; the outcomes
    already decided (duplicates) and the signals PostgreSQL decides."""

    phases: list[Phase]
    counts: dict[int, int]
    decided: dict[int, Outcome]
    pending: list[Pending]
    joined: int = 0  # storm members the script joined (counted in Redis)


def plan(
    signals: Sequence[NormalizedSignal],
    entries: Sequence[Entry],
    settings: GatewaySettings,
    received: datetime,
) -> Plan:
    """Phases cut wherever a firing signal follows a resolution, so PostgreSQL sees the batch's order."""
    envs, times, st = settings.environments, settings.alert_times, settings.storm
    times_of = AlertTimes(received, times.max_future_skew_s, times.max_age_s).believe
    lookback = {
        "rate": timedelta(seconds=st.rate_window_s),
        "pattern": timedelta(seconds=st.pattern_window_s),
    }
    phases: list[Phase] = [Phase()]
    counts: dict[int, int] = {}
    decided: dict[int, Outcome] = {}
    joined = 0
    # (index, phase, code, storm fingerprint, marker, first, resolved id) until the binds are known
    drafts: list[tuple[int, int, Code, str | None, str | None, bool, int | None]] = []
    seen: set[tuple[int, str, bool]] = set()  # (phase, fingerprint, resolved)
    last_phase: dict[str, int] = {}  # fingerprint -> phase of its last signal
    resolved_in: set[tuple[int, str]] = set()  # (phase, fingerprint) closed at that phase's end
    for i, (s, entry) in enumerate(zip(signals, entries, strict=True)):
        code = entry.code
        if code is DUPLICATE:
            rid = entry.request_id
            assert rid is not None
            decided[i] = Outcome(s.fingerprint, "duplicate", rid)
            counts[rid] = counts.get(rid, 0) + 1
            continue
        if code is JOINED:  # only in a webhook the script decided whole: counted there
            rid = entry.request_id
            assert rid is not None
            decided[i] = Outcome(s.fingerprint, "storm_aggregated", rid)
            joined += 1
            continue
        if code is not RESOLVED and phases[-1].resolves:
            phases.append(Phase())  # a firing after a resolution: PostgreSQL must see them in order
        k, phase = len(phases) - 1, phases[-1]
        last_phase[s.fingerprint] = k
        key = (k, s.fingerprint, code is RESOLVED)
        first = key not in seen
        seen.add(key)
        if code is RESOLVED:
            phase.resolves.setdefault(s.fingerprint, times_of(s.ends_at))
            phase.resolve_seqs.setdefault(s.fingerprint, _seq(entry))
            resolved_in.add((k, s.fingerprint))
            drafts.append((i, k, code, None, None, first, entry.request_id))
        elif code is SINGLE:
            if s.fingerprint in phase.singles:
                phase.singles[s.fingerprint].occurrences += 1
            else:
                env = environment(s.namespace, envs)
                phase.singles[s.fingerprint] = NewRequest(
                    s,
                    env,
                    priority(s.severity, env),
                    1,
                    times_of(s.starts_at),
                    period=entry.period,
                    seq=_seq(entry),
                )
            drafts.append((i, k, code, None, entry.value, first, None))
        else:
            window = storm_window(entry.value)
            sfp = storm_fingerprint(window.storm_type, s.name, s.namespace, window.start_ms)
            storm = phase.storms.get(sfp)
            if storm is None:
                env = environment(s.namespace, envs)
                storm = phase.storms[sfp] = StormJoin(
                    sfp,
                    window.storm_type,
                    datetime.fromtimestamp(window.start_ms / 1000, UTC),
                    s,
                    env,
                    priority(s.severity, env),
                    lookback=lookback[window.storm_type],
                )
            storm.members.setdefault(s.fingerprint, s)
            storm.first_seen.setdefault(s.fingerprint, times_of(s.starts_at))
            storm.occurrences += 1
            drafts.append((i, k, code, sfp, entry.value, first, None))
    pending = [
        Pending(
            i,
            k,
            code,
            sfp,
            marker,
            first,
            # Only requests still open when the webhook ends are bound: never one closed in it.
            bind=code is not RESOLVED
            and first
            and last_phase[signals[i].fingerprint] == k
            and (k, signals[i].fingerprint) not in resolved_in,
            resolved_id=rid,
        )
        for i, k, code, sfp, marker, first, rid in drafts
    ]
    return Plan(phases, counts, decided, pending, joined)


@dataclass(slots=True)  # not frozen: one per new signal
class Bind:
    """A dedup entry to point at its committed request."""

    fingerprint: str
    marker: str
    request_id: int


@dataclass(frozen=True, slots=True)
class StormBind:
    """A storm request this webhook opened, to bind to its window in Redis (scripts/bind.lua)."""

    name: str
    namespace: str
    start_ms: int
    request_id: int


def settle(
    signals: Sequence[NormalizedSignal], planned: Plan, written: Sequence[Written]
) -> tuple[list[Outcome], list[Bind], list[StormBind]]:
    """Each signal's outcome, decided once, and the bindings to queue. A storm window's first new member
    of this webhook opens it if PostgreSQL inserted the window's request."""
    outcomes: dict[int, Outcome] = dict(planned.decided)
    binds: list[Bind] = []
    storm_binds: list[StormBind] = []
    opened: set[tuple[int, str]] = set()
    for p in planned.pending:
        s, done = signals[p.index], written[p.phase]
        if p.code is RESOLVED:
            rid = done.resolved.get(s.fingerprint, p.resolved_id) if p.first else p.resolved_id
            outcomes[p.index] = Outcome(s.fingerprint, "resolved", rid)
            continue
        if p.code is STORM:
            assert p.storm is not None
            assert p.marker is not None
            rid, inserted, added = done.storms[p.storm]
            outcome = "duplicate"
            if p.first and s.fingerprint in added:
                outcome = "storm_aggregated"
                if inserted and (p.phase, p.storm) not in opened:
                    opened.add((p.phase, p.storm))
                    outcome = "storm_opened"
                    start_ms = storm_window(p.marker).start_ms
                    storm_binds.append(StormBind(s.name, s.namespace, start_ms, rid))
        else:
            rid, inserted = done.singles[s.fingerprint]
            outcome = "created" if p.first and inserted else "duplicate"
        outcomes[p.index] = Outcome(s.fingerprint, outcome, rid)
        if p.bind:
            assert p.marker is not None
            binds.append(Bind(s.fingerprint, p.marker, rid))
    return [outcomes[i] for i in range(len(signals))], binds, storm_binds
