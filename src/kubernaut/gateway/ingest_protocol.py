"""The ingest script's protocol (scripts/ingest.lua) in one place: its ARGV, its reply and the pending
dedup markers it stores. The pipeline and the bench both speak it through this module."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Protocol

from kubernaut.config import GatewaySettings

RATE_LIMIT_MODES = {"off": 0, "enforce": 1, "shadow": 2}
_HEAD = 16  # ARGV before the per-signal fields
_FIELDS = 6  # per signal
_OWN_MARKER, _STORM_MARKER = "p", "q"


class Limit(IntEnum):
    """Reply field 1: the rate limit's verdict on the source."""

    NONE = 0
    ENFORCED = 1  # nothing else ran; field 2 is the wait in ms
    SHADOW = 2  # would be limited; the signals were processed


class Code(IntEnum):
    """Per-signal reply code."""

    DUPLICATE = 0  # value: the open request's id
    SINGLE = 1  # value: the pending marker of its own request
    STORM = 2  # value: the pending marker of a storm member
    RESOLVED = 3  # value: the request id the dedup entry held, or ''
    JOINED = 4  # value: the id of the bound storm the script joined it to (counted there)


# A reply's code to its member: ``Code(n)`` and ``Code.X`` cost about 0.2 µs each, per signal.
_CODES = {code.value: code for code in Code}
DUPLICATE, SINGLE, STORM, RESOLVED = Code.DUPLICATE, Code.SINGLE, Code.STORM, Code.RESOLVED
JOINED = Code.JOINED
_DECIDED = (DUPLICATE, JOINED)


class ScriptSignal(Protocol):
    """What the script needs of one signal."""

    @property
    def firing(self) -> bool: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def starts_at(self) -> datetime | None: ...


def settings_args(settings: GatewaySettings) -> list[int]:
    """ARGV 4-14: rate-limit, dedup and storm settings."""
    rl, st = settings.rate_limit, settings.storm
    return [
        RATE_LIMIT_MODES[rl.mode],
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


def encode(
    prefix: str,
    nonce: str,
    source: str,
    settings: Sequence[int],
    signals: Iterable[ScriptSignal],
    *,
    count_duplicates: bool = True,
) -> list[str | int]:
    """The whole ARGV of one call; ``settings`` from :func:`settings_args`. ``count_duplicates``: a
    webhook of duplicates and joins to bound storms only is counted by the script (else it goes to
    PostgreSQL like any other). A firing alert's start goes along for a member the script joins."""
    if len(settings) != _HEAD - 5:
        raise ValueError(f"expected {_HEAD - 5} settings, got {len(settings)}")
    per_signal: list[str | int] = []
    for s in signals:
        if s.firing:
            at = s.starts_at
            start = round(at.timestamp() * 1000) if at is not None and at.tzinfo is not None else 0
            per_signal += ("f", s.fingerprint, s.name, s.namespace, s.resource, start)
        else:
            per_signal += ("r", s.fingerprint, s.name, s.namespace, s.resource, 0)
    count = 1 if count_duplicates else 0
    return [prefix, nonce, source, *settings, count, len(per_signal) // _FIELDS, *per_signal]


@dataclass(slots=True)
class Entry:
    """One signal's answer; ``seq`` its place in the Redis master's order of signals (every signal of a
    call that goes to PostgreSQL has one). Not frozen: one per signal, built four times faster."""

    code: Code
    value: str
    seq: int | None = None

    @property
    def request_id(self) -> int | None:
        """The request id of a duplicate, a join or a resolution (None: nothing was open)."""
        if self.code is not DUPLICATE and self.code is not RESOLVED and self.code is not JOINED:
            raise ValueError(f"a {self.code.name} entry carries a marker, not a request id")
        return int(self.value) if self.value else None

    @property
    def period(self) -> int:
        """A SINGLE's period: the seq of the resolution Redis saw before its request opened (0: none)."""
        if self.code is not SINGLE:
            raise ValueError(f"a {self.code.name} entry carries no period")
        return pending_period(self.value)


@dataclass(frozen=True, slots=True)
class Reply:
    limit: Limit
    retry_after_ms: int
    entries: list[Entry]  # one per signal, in order; empty when ENFORCED
    # Count batches that may hold members of storms a resolution unbound: PostgreSQL must have them
    # before the webhook's resolutions are written (scripts/ingest.lua, "Bound storms").
    wait_for_batches: frozenset[str] = frozenset()


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(raw: Sequence[bytes | str | int], signals: int) -> Reply:
    """The script's reply to a call carrying ``signals`` signals: per signal {code, value}, then the
    seq of the first signal when any goes to PostgreSQL (signal i has seq + i), then the count batches
    its resolutions wait for, if any."""
    limit, retry_after = Limit(int(raw[0])), int(raw[1])
    if limit is Limit.ENFORCED:
        return Reply(limit, retry_after, [])
    extra = len(raw) - 2 - 2 * signals
    if extra not in (0, 1, 2):
        raise ValueError(f"ingest reply has {len(raw) - 2} fields for {signals} signals")
    base = int(raw[2 + 2 * signals]) if extra else None
    waits = frozenset(b for b in _text(raw[-1]).split(",") if b) if extra == 2 else frozenset()
    codes = [code for i in range(2, 2 + 2 * signals, 2) if (code := _CODES.get(int(raw[i]))) is not None]
    if len(codes) != signals:
        raise ValueError(f"ingest reply has an unknown code: {raw[2 : 2 + 2 * signals : 2]!r}")
    if base is None and any(c not in _DECIDED for c in codes):
        raise ValueError("ingest reply sends signals to PostgreSQL without their seq")
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw[3 : 3 + 2 * signals : 2]]
    entries = [
        Entry(c, v, None if base is None else base + i)
        for i, (c, v) in enumerate(zip(codes, values, strict=True))
    ]
    return Reply(limit, retry_after, entries, waits)


def pending_period(marker: str) -> int:
    """The period in an own request's marker, ``p:<nonce>:<index>:<period>``; 0 in a marker an older
    release stored (``p:<nonce>:<index>``, still met for a dedup TTL after an upgrade)."""
    parts = marker.split(":")
    if len(parts) not in (3, 4) or parts[0] != _OWN_MARKER:
        raise ValueError(f"not an own request's marker: {marker!r}")
    return int(parts[3]) if len(parts) == 4 else 0


@dataclass(slots=True)  # not frozen: one per storm member
class StormWindow:
    """The storm window a member's marker names: one aggregated request per window."""

    start_ms: int
    storm_type: str


def storm_window(marker: str) -> StormWindow:
    """Parse a storm member's marker, ``q:<nonce>:<index>:<start ms>:<type>``."""
    parts = marker.split(":")
    if len(parts) != 5 or parts[0] != _STORM_MARKER:
        raise ValueError(f"not a storm member's marker: {marker!r}")
    return StormWindow(int(parts[3]), parts[4])


def storm_group_key(prefix: str, name: str, namespace: str) -> str:
    """The Redis hash of one (namespace, alert name) group's storm windows (scripts/ingest.lua)."""
    return f"{prefix}storm:{len(namespace.encode())}:{namespace}:{name}"


@dataclass(slots=True)
class MemberRecord:
    """A storm member the script joined to its bound storm, waiting in a count batch for PostgreSQL."""

    request_id: int
    fingerprint: str
    nonce: str  # the ingest call that joined it
    started_ms: int  # the alert's own start (0: none)
    received_us: int  # on the master's clock: the members' order, as one by one (then by fingerprint)
    resource: str


@dataclass(slots=True)
class CountBatch:
    """One count batch (scripts/take_counts.lua): duplicate counts per request, the storm members joined
    in Redis, and the calls voided since (``u:<nonce>``) with the storms they had joined members to."""

    counts: dict[int, int]
    members: list[MemberRecord]
    voided: dict[str, list[int]]


def count_batch(flat: Sequence[bytes | str]) -> CountBatch:
    """Read a batch's hash (HGETALL's flat reply)."""
    batch = CountBatch({}, [], {})
    for i in range(0, len(flat), 2):
        field, value = _text(flat[i]), flat[i + 1]
        if field[:2] == "j:":
            batch.members += _members(field[2:], value if isinstance(value, bytes) else value.encode())
        elif field[:2] == "u:":
            batch.voided[field[2:]] = [int(rid) for rid in _text(value).split(",") if rid]
        elif field[:1] != "_":  # '_joins': how many members the batch holds (scripts/ingest.lua)
            batch.counts[int(field)] = int(value)
    return batch


def _members(nonce: str, value: bytes) -> list[MemberRecord]:
    """One call's joined members: ``<received us>`` then per member ``' <id> <alert start ms>
    <fingerprint> <resource length in bytes> <resource>'`` (scripts/ingest.lua)."""
    received_end = value.find(b" ")
    if received_end < 0:
        return []
    received, pos, members = int(value[:received_end]), received_end + 1, []
    while pos < len(value):
        fields = []
        for _ in range(4):  # id, start, fingerprint, resource length
            end = value.index(b" ", pos)
            fields.append(value[pos:end])
            pos = end + 1
        rid, started, fingerprint, length = fields
        resource = value[pos : pos + int(length)].decode()
        pos += int(length) + 1
        members.append(MemberRecord(int(rid), fingerprint.decode(), nonce, int(started), received, resource))
    return members
