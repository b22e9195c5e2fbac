"""The ingest script's protocol (scripts/ingest.lua) in one place: its ARGV, its reply and the pending
dedup markers it stores. The pipeline and the bench both speak it through this module."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from kubernaut.config import GatewaySettings

RATE_LIMIT_MODES = {"off": 0, "enforce": 1, "shadow": 2}
_HEAD = 16  # ARGV before the per-signal fields
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


# A reply's code to its member: ``Code(n)`` and ``Code.X`` cost about 0.2 µs each, per signal.
_CODES = {code.value: code for code in Code}
DUPLICATE, SINGLE, STORM, RESOLVED = Code.DUPLICATE, Code.SINGLE, Code.STORM, Code.RESOLVED


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
    webhook of duplicates only is counted by the script (else it goes to PostgreSQL like any other)."""
    if len(settings) != _HEAD - 5:
        raise ValueError(f"expected {_HEAD - 5} settings, got {len(settings)}")
    per_signal: list[str | int] = []
    for s in signals:
        per_signal += ("f" if s.firing else "r", s.fingerprint, s.name, s.namespace, s.resource)
    return [prefix, nonce, source, *settings, 1 if count_duplicates else 0, len(per_signal) // 5, *per_signal]


@dataclass(slots=True)
class Entry:
    """One signal's answer; ``seq`` its place in the Redis master's order of signals (every signal of a
    call that goes to PostgreSQL has one). Not frozen: one per signal, built four times faster."""

    code: Code
    value: str
    seq: int | None = None

    @property
    def request_id(self) -> int | None:
        """The request id of a duplicate or a resolution (None: nothing was open)."""
        if self.code is not DUPLICATE and self.code is not RESOLVED:
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


def decode(raw: Sequence[bytes | str | int], signals: int) -> Reply:
    """The script's reply to a call carrying ``signals`` signals: per signal {code, value}, then the
    seq of the first signal when any goes to PostgreSQL (signal i has seq + i)."""
    limit, retry_after = Limit(int(raw[0])), int(raw[1])
    if limit is Limit.ENFORCED:
        return Reply(limit, retry_after, [])
    if len(raw) not in (2 + 2 * signals, 3 + 2 * signals):
        raise ValueError(f"ingest reply has {len(raw) - 2} fields for {signals} signals")
    base = int(raw[-1]) if len(raw) == 3 + 2 * signals else None
    codes = [code for i in range(2, 2 + 2 * signals, 2) if (code := _CODES.get(int(raw[i]))) is not None]
    if len(codes) != signals:
        raise ValueError(f"ingest reply has an unknown code: {raw[2 : 2 + 2 * signals : 2]!r}")
    if base is None and any(c is not DUPLICATE for c in codes):
        raise ValueError("ingest reply sends signals to PostgreSQL without their seq")
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw[3 : 3 + 2 * signals : 2]]
    entries = [
        Entry(c, v, None if base is None else base + i)
        for i, (c, v) in enumerate(zip(codes, values, strict=True))
    ]
    return Reply(limit, retry_after, entries)


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
