"""Alert ingestion measured the same way for any receiver: a URL, an encoder, the same alerts and load.

A target is started afresh for each measurement by a :data:`TargetFactory` (a context manager), so every
row begins from the same state: the repeat-heavy mix's fixed batches are sent once before the clock runs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from kubernaut_tools.bench.alerts import MIXES, UNIQUE, Encoder, Mix, batches
from kubernaut_tools.bench.errors import BenchError
from kubernaut_tools.bench.redis_limit import command_calls
from kubernaut_tools.bench.wrk import Load, run_wrk


@dataclass(frozen=True)
class IngestTarget:
    name: str
    url: str  # the full POST URL
    encode: Encoder
    headers: tuple[str, ...] = ()  # "Name: value", as wrk's --header takes them
    redis: tuple[str, int] | None = None  # the Redis it works on, to count its commands per alert
    redis_password: str | None = None
    # After the load: (alerts acknowledged, alerts possibly taken but unanswered) -> what was stored, checked
    verify: Callable[[int, int], str] | None = None


TargetFactory = Callable[[], AbstractContextManager[IngestTarget]]


@dataclass(frozen=True)
class Shape:
    name: str
    alerts_per_request: int


SHAPES = (Shape("single", 1), Shape("batch-50", 50))


@dataclass
class IngestRow:
    target: str
    shape: str
    mix: str
    alerts_per_request: int
    requests_per_s: float
    alerts_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    paced_at_per_s: float | None = None  # set for a latency row measured at a fixed request rate
    redis_commands_per_alert: float | None = None
    ratio_to_alertmanager: float | None = None
    check: str | None = None  # the target's own check of what it stored (IngestTarget.verify)

    @property
    def headline(self) -> str:
        """What the row is about: throughput, or p99 latency at a fixed rate."""
        return "p99_ms" if self.paced_at_per_s else "alerts_per_s"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline}


_salts = count(1)


def _check_accepted(target: IngestTarget, bodies: list[str]) -> None:
    """Send each body once (never-seen ones with a fixed token): a refused body would void the figures."""
    headers = dict(h.split(": ", 1) for h in target.headers) | {"Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=10) as client:
        for body in bodies:
            resp = client.post(target.url, content=body.replace(UNIQUE, "warmup"))
            if not resp.is_success:
                raise BenchError(
                    f"{target.name} refused a benchmark body: {resp.status_code} {resp.text[:200]}"
                )


def measure(
    target: IngestTarget,
    shape: Shape,
    mix: Mix,
    load: Load,
    workdir: Path,
    rate_per_s: float | None = None,
) -> IngestRow:
    bodies = [target.encode(b) for b in batches(mix, shape.alerts_per_request)]
    body_file = workdir / f"{target.name}-{shape.name}-{mix}.bodies"
    body_file.write_text("\n".join(bodies) + "\n")
    _check_accepted(target, bodies)
    # A salt per measurement keeps never-seen alerts unseen across the rows of one run.
    salt = f"{next(_salts) % 0x10000:04x}"
    pw = target.redis_password
    calls_before = command_calls(*target.redis, password=pw) if target.redis else 0
    result = run_wrk(target.url, body_file, load, headers=target.headers, rate_per_s=rate_per_s, salt=salt)
    alerts = result.requests * shape.alerts_per_request
    # Requests in flight at the end and background work (count flushes) make this a slight overestimate.
    per_alert = (
        (command_calls(*target.redis, password=pw) - calls_before) / alerts
        if target.redis and alerts
        else None
    )
    check = None
    if target.verify is not None:
        answered = len(bodies) + result.requests - result.non_2xx
        unanswered = load.connections + result.socket_errors
        check = target.verify(answered * shape.alerts_per_request, unanswered * shape.alerts_per_request)
    return IngestRow(
        check=check,
        target=target.name,
        shape=shape.name,
        mix=mix,
        alerts_per_request=shape.alerts_per_request,
        requests_per_s=result.requests_per_s,
        alerts_per_s=result.requests_per_s * shape.alerts_per_request,
        p50_ms=result.latency_ms["50"],
        p90_ms=result.latency_ms["90"],
        p99_ms=result.latency_ms["99"],
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        paced_at_per_s=rate_per_s,
        redis_commands_per_alert=None if per_alert is None else round(per_alert, 2),
    )


def throughput_rows(
    targets: dict[str, TargetFactory], load: Load, workdir: Path, log: Callable[[str], None]
) -> list[IngestRow]:
    """Maximum rate for each shape x mix, each on a freshly started target; the targets run back to back
    for each, so slow drift in the machine's load hits both sides of a ratio alike. Grouped by target."""
    rows = []
    for shape in SHAPES:
        for mix in MIXES:
            for start in targets.values():
                with start() as target:
                    log(f"{target.name}: {shape.name}, {mix}, {load.duration_s:g}s")
                    rows.append(measure(target, shape, mix, load, workdir))
    order = list(targets)
    return sorted(rows, key=lambda r: order.index(r.target))


def paced_row(
    start: TargetFactory, rate_per_s: float, load: Load, workdir: Path, log: Callable[[str], None]
) -> IngestRow:
    """Single-alert latency at a fixed request rate (repeat-heavy mix)."""
    with start() as target:
        log(f"{target.name}: single, repeat-heavy, paced at {rate_per_s:.0f}/s, {load.duration_s:g}s")
        return measure(target, SHAPES[0], "repeat-heavy", load, workdir, rate_per_s=rate_per_s)


def add_ratios(rows: list[IngestRow]) -> None:
    """Each row's headline figure over Alertmanager's in the same (shape, mix, paced) row."""
    baseline = {(r.shape, r.mix, r.paced_at_per_s is not None): r for r in rows if r.target == "alertmanager"}
    for row in rows:
        base = baseline.get((row.shape, row.mix, row.paced_at_per_s is not None))
        if base is None:
            continue
        mine, theirs = getattr(row, row.headline), getattr(base, base.headline)
        row.ratio_to_alertmanager = round(mine / theirs, 3) if theirs else None
