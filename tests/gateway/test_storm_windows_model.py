"""The storm windows of scripts/ingest.lua against a reference model with a clock of its own.

The script runs on the stack's real master with one change: its clock (``TIME``) reads a hash the test
sets, so the sliding windows, the inactivity and the maximum window are crossed on purpose, many times
per example. The model keeps every signal (no trimming), so it also checks that keeping only the newest
threshold + 1 entries per window changes no decision, and that the storm hash's encoding survives any
resource name. Bounded in the suite; a longer run: ``KUBERNAUT_STORM_MODEL_EXAMPLES=2000 ... pytest``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubernaut.gateway.redis_state import INGEST
from kubernaut_tools.localstack import LocalStack

pytestmark = pytest.mark.stack

EXAMPLES = int(os.environ.get("KUBERNAUT_STORM_MODEL_EXAMPLES", "200"))
RATE_THRESHOLD, RATE_WINDOW = 3, 60_000
PATTERN_THRESHOLD, PATTERN_WINDOW = 2, 120_000
INACTIVITY, MAX_WINDOW = 60_000, 300_000
# rate limit off, dedup TTL a day, storms on; the windows in ms
SETTINGS = [0, 1000, 10, 86_400, 1, RATE_THRESHOLD, RATE_WINDOW, PATTERN_THRESHOLD, PATTERN_WINDOW]
SETTINGS += [INACTIVITY, MAX_WINDOW]
NAMES = ("Cpu", "Mem")
# Resource names that a length-prefixed encoding must carry: spaces, digits, colons, empty.
RESOURCES = ("Pod/a", "Pod/b", "Pod/c d", "12 3 ", "Pod/e:f", "", "Pod/g")
START_MS = 1_900_000_000_000
# Steps that land exactly on a window's edge (or 1 ms either side) after one step of quiet.
EDGES = tuple(w + d for w in (RATE_WINDOW, PATTERN_WINDOW, INACTIVITY) for d in (-1, 0, 1))

ModelSignal = tuple[str, str, bool]  # name, resource, firing
webhooks = st.lists(
    st.tuples(
        st.integers(0, 70_000) | st.sampled_from(EDGES),  # clock step before the webhook (ms)
        st.lists(
            st.tuples(
                st.sampled_from(NAMES), st.sampled_from(RESOURCES), st.sampled_from((True, True, False))
            ),
            min_size=1,
            max_size=6,
        ),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class Group:
    new_signals: list[int] = field(default_factory=list)  # times
    resources: dict[str, int] = field(default_factory=dict)  # resource -> last time
    start: int | None = None
    kind: str = ""
    last_join: int = 0


class StormModel:
    """The design's storm rules over the whole history, and dedup entries that are never bound."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.dedup: dict[str, str] = {}
        self.seq = 0

    def _window(self, name: str, resource: str, now: int) -> str | None:
        g = self.groups.setdefault(name, Group())
        g.new_signals.append(now)
        g.resources[resource] = now
        is_open = g.start is not None and now - g.last_join <= INACTIVITY and now - g.start < MAX_WINDOW
        if not is_open:
            if sum(t > now - PATTERN_WINDOW for t in g.resources.values()) > PATTERN_THRESHOLD:
                g.kind = "pattern"
            elif sum(t > now - RATE_WINDOW for t in g.new_signals) > RATE_THRESHOLD:
                g.kind = "rate"
            else:
                return None
            g.start = now
        g.last_join = now
        return f"{g.start}:{g.kind}"

    def ingest(self, nonce: str, signals: list[ModelSignal], now: int) -> list[object]:
        reply: list[object] = [0, 0]
        # The script's clock of signals (microseconds, never back), read only by a call that goes to
        # PostgreSQL: here every call with a signal does (no entry is ever bound).
        base = max(now * 1000, self.seq + 1) if signals else 0
        for i, (name, resource, firing) in enumerate(signals):
            fp = f"{name}|{resource}"
            entry = self.dedup.get(fp)
            if not firing:
                self.dedup[fp] = f"r:{base + i}"  # a tombstone: not a marker
                reply += [3, ""]
            elif entry is not None and not entry.startswith("r:"):
                reply += [1 if entry.startswith("p:") else 2, entry]
            else:
                period = entry[2:] if entry is not None else "0"
                window = self._window(name, resource, now)
                marker = f"p:{nonce}:{i}:{period}" if window is None else f"q:{nonce}:{i}:{window}"
                self.dedup[fp] = marker
                reply += [1 if window is None else 2, marker]
        if signals:
            self.seq = base + len(signals) - 1
            reply.append(base)
        return reply


@pytest.fixture(scope="module")
def clocked(stack: LocalStack) -> Iterator[tuple[redis.Redis, str]]:
    """The master and the ingest script with its clock read from ``<prefix>clock``."""
    source = INGEST.source.decode()
    assert source.count("redis.call('TIME')") == 1
    source = source.replace("redis.call('TIME')", "redis.call('HMGET', prefix .. 'clock', 's', 'us')")
    master = stack.current_master()
    assert master is not None
    with redis.Redis(**stack.redis_auth(master[1])) as client:
        yield client, str(client.script_load(source))


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(webhooks)
def test_the_storm_windows_follow_the_model(
    clocked: tuple[redis.Redis, str], steps: list[tuple[int, list[ModelSignal]]]
) -> None:
    client, sha = clocked
    prefix = f"gwsm:{uuid.uuid4().hex[:10]}:"
    model, now = StormModel(), START_MS
    try:
        for n, (step, signals) in enumerate(steps):
            now += step
            client.hset(f"{prefix}clock", mapping={"s": now // 1000, "us": now % 1000 * 1000})
            args: list[str | int] = [prefix, f"n{n}", "src", *SETTINGS, 1, len(signals)]  # 1: count here
            for name, resource, firing in signals:
                args += ("f" if firing else "r", f"{name}|{resource}", name, "ns", resource, 0)
            got = client.evalsha(sha, 0, *args)
            decoded = [v.decode() if isinstance(v, bytes) else v for v in got]
            assert decoded == model.ingest(f"n{n}", signals, now), f"webhook {n} at +{now - START_MS} ms"
    finally:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
