"""The chaos drill's fault schedule: a pure function of the seed and the duration (runs repeat)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

WARMUP_S = 3.0
TAIL_S = 4.0
# Rough time each kind keeps the nemesis busy (fault and heal), so the next one is planned after it.
_BUSY_S = {
    "master-kill": 12.0,
    "master-pause": 4.0,
    "replica-kill": 3.0,
    "sentinel-kill": 3.0,
    "all-redis-restart": 6.0,
    "postgres-restart": 4.0,
    "gateway-kill": 3.0,
    "partition": 4.0,
}
KINDS = tuple(_BUSY_S)
# Master pauses and gateway-master partitions: below and above socket_s (1 s) and Sentinel's down-after (5 s).
PAUSE_RANGE_S = (0.5, 8.0)
OUTAGE_RANGE_S = (0.5, 3.0)
GAP_RANGE_S = (1.0, 5.0)


@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # from the start of the load
    kind: str
    hold_s: float  # pause length, or how long the killed part stays down
    target: int  # which replica / sentinel (index), where the kind has a choice

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def schedule(seed: int, duration_s: float, kinds: tuple[str, ...] = KINDS) -> list[PlannedFault]:
    """Faults for a run of ``duration_s`` seconds, one after another, none in the warm-up or the tail,
    drawn from ``kinds`` (all by default; the same seed with another subset gives another schedule)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(KINDS)}")
    kinds = tuple(k for k in KINDS if k in kinds)  # the order of KINDS, whatever order was asked
    rng = random.Random(f"kubernaut-chaos:{seed}:{float(duration_s)!r}")
    planned: list[PlannedFault] = []
    t = WARMUP_S
    while True:
        t += rng.uniform(*GAP_RANGE_S)
        kind = rng.choice(kinds)
        hold = rng.uniform(*(PAUSE_RANGE_S if kind in ("master-pause", "partition") else OUTAGE_RANGE_S))
        target = rng.randrange(3)
        if t + hold > duration_s - TAIL_S:
            return planned
        planned.append(PlannedFault(round(t, 3), kind, round(hold, 3), target))
        t += hold + _BUSY_S[kind]
