"""What one webhook asks PostgreSQL to write, and what PostgreSQL answered (gateway/store.py commits it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kubernaut.gateway.signal import NormalizedSignal

# The place in Redis's order of a signal that has none: after every other.
LAST = 2**62


@dataclass(slots=True)
class NewRequest:
    """A fingerprint PostgreSQL must create or count, with how often it came in this webhook."""

    signal: NormalizedSignal
    environment: str
    priority: str
    occurrences: int = 1
    first_seen: datetime | None = None  # the alert's own time (else the receipt time)
    period: int = 0  # the period Redis saw it in, and its place in Redis's order (migration 070)
    seq: int = LAST


@dataclass(slots=True)
class StormJoin:
    """Signals joining one storm window; ``members`` holds one signal per fingerprint."""

    fingerprint: str
    storm_type: str
    window_start: datetime
    first: NormalizedSignal
    environment: str
    priority: str
    members: dict[str, NormalizedSignal] = field(default_factory=dict)
    occurrences: int = 0
    first_seen: dict[str, datetime] = field(default_factory=dict)  # member -> its alert's own time
    lookback: timedelta = timedelta(0)  # the detection window: earlier requests within it are linked


@dataclass(slots=True)
class Phase:
    """A run of a webhook's signals with every firing before every resolution: new requests and storm
    joins first, then the resolutions. A webhook is cut into phases where a firing follows a
    resolution, so PostgreSQL sees its signals in batch order, as if they came one by one."""

    singles: dict[str, NewRequest] = field(default_factory=dict)
    storms: dict[str, StormJoin] = field(default_factory=dict)
    resolves: dict[str, datetime | None] = field(default_factory=dict)  # fingerprint -> alert's end
    resolve_seqs: dict[str, int] = field(default_factory=dict)  # fingerprint -> place in Redis's order


@dataclass(slots=True)
class Written:
    singles: dict[str, tuple[int, bool]]  # fingerprint -> (request id, inserted)
    storms: dict[str, tuple[int, bool, set[str]]]  # storm fingerprint -> (id, inserted, members added)
    resolved: dict[str, int]  # fingerprint -> closed request id


@dataclass(slots=True)
class Webhook:
    """One webhook's writes: its phases in order, then ``counts`` (its duplicates of known requests:
    request id -> occurrences)."""

    signal_type: str
    source: str
    now: datetime
    phases: Sequence[Phase]
    counts: dict[int, int] = field(default_factory=dict)
