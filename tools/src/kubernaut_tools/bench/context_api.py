"""``kubernaut bench context-api``: the Context-API's read path tier by tier, over a seeded history of
100,000 incidents with a Zipf key mix (keymix.py), each tier served by a replica configured to use it.

Replicas (real processes on the stack's PostgreSQL and Context-API Redis, sharing one L1):

- ``l2-warm``: L2 large enough for every key; warmed by requesting every key once, which also fills L1;
- ``l1-only``: L2 of one entry aging out in 1 ms, so every request goes to L1 (a second replica whose L2
  is cold by construction);
- ``l3-only``: L1 off and the same tiny L2: every request is a PostgreSQL query;
- ``l2-default``: L2 at its default size (10,000 entries, 30 s), started cold: its L2 hit rate under the mix.

Then the degradation figure: ``l3-only`` paced at half its maximum rate, the Context-API's Redis killed by
PID, ``l1-only`` (now without its Redis) at the same rate at once, then the two taking turns; and both at
their maximum rate.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from kubernaut_tools.bench.contextapi_target import (
    LONG_TTL_S,
    TINY_L2,
    CacheCounters,
    Replica,
    l1_entries,
    replica,
    seed,
    walk_all,
)
from kubernaut_tools.bench.gateway_ingest import REFERENCE_QUIET_PER_S, REFERENCE_SCRIPT
from kubernaut_tools.bench.keymix import (
    BY_ID_SHARE,
    EXPONENT,
    LIST_LIMIT,
    context_api_mix,
    ideal_hit_rate,
    write_key_file,
)
from kubernaut_tools.bench.redis_limit import EvalshaRow, evalsha
from kubernaut_tools.bench.report import BenchReport, FigureTable, tool_version
from kubernaut_tools.bench.wrk import Load, WrkResult, get_keys
from kubernaut_tools.localstack import LocalStack

PROCESS_PREFIX = "bench-context-api-"
INCIDENTS = 100_000
SEED = 9
DEFAULT_L2_ENTRIES = 10_000
DEGRADED_ROUNDS = 3  # L3-only and Redis-killed runs taking turns after the kill (1 with --quick)
# This round's targets (issue 9).
TARGET_L2_OVER_L3, TARGET_DEGRADED_P99 = 5.0, 1.2

REPLICAS: dict[str, dict[str, Any]] = {
    "l2-warm": {"l2": {"max_entries": 1_000_000, "max_bytes": 2**30, "ttl_s": LONG_TTL_S}},
    "l1-only": {"l2": TINY_L2},
    "l3-only": {"l1": {"enabled": False}, "l2": TINY_L2},
    "l2-default": {},
}


@dataclass
class CacheRow:
    row: str
    replica: str
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failed: int
    served_by: dict[str, float]  # X-Cache tier -> share of answers
    l2_hit_rate: float | None  # from the replica's own counters, over the measured run
    l1_hit_rate: float | None
    paced_at_per_s: float | None = None
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio compares

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _row(
    row: str,
    target: Replica,
    result: WrkResult,
    counters: CacheCounters,
    paced: float | None = None,
) -> CacheRow:
    answered = sum(result.served_by.values())
    return CacheRow(
        row,
        target.name,
        result.requests_per_s,
        result.latency_ms["50"],
        result.latency_ms["90"],
        result.latency_ms["99"],
        result.non_2xx + result.socket_errors,
        {k: v / answered for k, v in result.served_by.items() if v} if answered else {},
        counters.hit_rate("l2"),
        counters.hit_rate("l1"),
        paced,
    )


def measure(
    row: str,
    target: Replica,
    key_file: Path,
    load: Load,
    *,
    warmup_s: float,
    log: Callable[[str], None],
    rate_per_s: float | None = None,
) -> CacheRow:
    """A run of the mix after ``warmup_s`` of the same, unmeasured (none when 0); cache counters over the
    measured run only."""
    how = f"paced at {rate_per_s:,.0f}/s" if rate_per_s else "maximum rate"
    log(f"{row} ({target.name}): {how}, {warmup_s:g}s warm-up + {load.duration_s:g}s")
    if warmup_s > 0:
        warm = Load(warmup_s, load.connections, load.threads)
        get_keys(target.url, key_file, warm, rate_per_s=rate_per_s, headers=target.auth)
    before = target.counters()
    result = get_keys(
        target.url, key_file, load, rate_per_s=rate_per_s, salt=f"{len(row):04x}", headers=target.auth
    )
    return _row(row, target, result, target.counters() - before, rate_per_s)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def rows_table(rows: list[CacheRow]) -> FigureTable:
    return FigureTable(
        "Context-API reads, Zipf mix (ratio: see the ratio column's basis in the notes)",
        (
            *("row", "replica", "served by", "req/s", "p50 ms", "p90 ms", "p99 ms", "failed"),
            *("L2 hit rate", "L1 hit rate", "ratio"),
        ),
        [
            (
                r.row if r.paced_at_per_s is None else f"{r.row} @ {r.paced_at_per_s:,.0f}/s",
                r.replica.removeprefix(PROCESS_PREFIX),
                " ".join(f"{t} {100 * s:.1f}%" for t, s in sorted(r.served_by.items())) or "-",
                f"{r.requests_per_s:,.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p90_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.failed),
                _pct(r.l2_hit_rate),
                _pct(r.l1_hit_rate),
                "-" if r.ratio is None else f"{r.ratio:.2f}",
            )
            for r in rows
        ],
    )


def _served_check(row: CacheRow, tier: str) -> str | None:
    share = row.served_by.get(tier, 0.0)
    if share < 0.99:
        return f"WARNING: {row.row} served only {100 * share:.1f} % from {tier}"
    return None


def _reference_incr(host: str, port: int, password: str, requests: int) -> EvalshaRow:
    with redis.Redis(host=host, port=port, password=password) as r:
        sha = str(r.script_load(REFERENCE_SCRIPT))
    keys = ["bench:__rand_int__"]
    return evalsha(
        host,
        port,
        script="reference",
        sha=sha,
        keys=keys,
        args=[],
        pipeline=1,
        requests=requests,
        password=password,
    )


def run(stack: LocalStack, *, quick: bool, log: Callable[[str], None]) -> BenchReport:
    load = Load(duration_s=3 if quick else 10, threads=1)  # get.lua: one thread (see get_keys)
    rounds = 1 if quick else DEGRADED_ROUNDS
    warmup_s = 1 if quick else 3
    load_avg_before = os.getloadavg()[0]
    log("starting PostgreSQL and the Context-API's Redis (and the gateway's group, idle)")
    stack.up(services=False, timeout=120)
    t = stack.topology
    log(f"seeding {INCIDENTS:,} incidents")
    ids, seeded = seed(stack, INCIDENTS, SEED)
    mix = context_api_mix(ids, SEED)
    workdir = stack.run.component_dir("bench")
    workdir.mkdir(exist_ok=True)
    key_file = workdir / "context-api.keys"
    write_key_file(key_file, mix)
    reference = _reference_incr(
        t.host, t.redis_context_port, stack.redis_context_password, 50_000 if quick else 200_000
    )

    with ExitStack() as running:
        replicas = {
            name: running.enter_context(
                replica(
                    stack,
                    PROCESS_PREFIX + name,
                    t.context_http + i,
                    {**spec, "l1": {"ttl_s": LONG_TTL_S, **spec.get("l1", {})}},
                )
            )
            for i, (name, spec) in enumerate(REPLICAS.items())
        }
        warm = replicas["l2-warm"]
        warm_s, walks = walk_all(warm, key_file, len(mix), log), 1
        held = l1_entries(
            (t.host, t.redis_context_port),
            stack.settings().context_api.key_prefix,
            stack.redis_context_password,
        )

        def row(name: str, on: str, warmup: float = warmup_s, rate_per_s: float | None = None) -> CacheRow:
            return measure(
                name, replicas[on], key_file, load, warmup_s=warmup, log=log, rate_per_s=rate_per_s
            )

        l2, l1, l3 = row("L2 hits", "l2-warm"), row("L1 hits", "l1-only"), row("L3 only", "l3-only")
        # Started cold like a fresh pod; warmed by the mix itself for as long as it is then measured.
        l2_default = row(f"L2 at {DEFAULT_L2_ENTRIES:,} entries", "l2-default", warmup=load.duration_s)
        rate = round(l3.requests_per_s / 2)
        l3_paced = [row("L3 only (before)", "l3-only", rate_per_s=rate)]
        l1_failures = {name: r.l1_failures() for name, r in replicas.items() if name != "l3-only"}
        redis_pid = stack.table.get("redis-context")
        log(f"killing the Context-API's Redis (pid {redis_pid.pid if redis_pid else '?'}) with SIGKILL")
        stack.stop_component("redis-context", sig=signal.SIGKILL)
        # No warm-up: the first requests after the kill are measured, the breaker's opening included.
        first = row(f"Redis killed, first {load.duration_s:g} s", "l1-only", warmup=0, rate_per_s=rate)
        # Then the two replicas take turns, so the machine's drift falls on both alike.
        killed_paced: list[CacheRow] = []
        for _ in range(rounds):
            l3_paced.append(row("L3 only", "l3-only", rate_per_s=rate))
            killed_paced.append(row("Redis killed", "l1-only", rate_per_s=rate))
        killed = row("Redis killed", "l1-only")
        l3_max_after = row("L3 only (after)", "l3-only")
    rows = [l2, l1, l3, l2_default, l3_paced[0], first]
    rows += [r for pair in zip(l3_paced[1:], killed_paced, strict=True) for r in pair]
    rows += [killed, l3_max_after]

    for r in (l2, l1, l3, l2_default):
        r.ratio, r.ratio_of = round(r.requests_per_s / l3.requests_per_s, 3), "req/s over L3 only's"
    paced_p99 = _mean_p99(l3_paced)
    for r in (*l3_paced, *killed_paced):
        r.ratio, r.ratio_of = (
            round(r.p99_ms / paced_p99, 3),
            "p99 over the mean p99 of the paced L3-only runs",
        )
    # The first run after the kill against the L3-only runs just before and after it.
    first.ratio = round(first.p99_ms / _mean_p99(l3_paced[:2]), 3)
    first.ratio_of = "p99 over the mean p99 of the L3-only runs just before and after it"
    steady_ratio = round(_mean_p99(killed_paced) / paced_p99, 3)
    killed.ratio = round(killed.p99_ms / _mean_p99([l3, l3_max_after]), 3)
    killed.ratio_of = "p99 over the mean p99 of L3 only's at maximum rate before and after it"
    l3_max_after.ratio, l3_max_after.ratio_of = (
        round(l3_max_after.p99_ms / l3.p99_ms, 3),
        "p99 over L3 only's",
    )

    ideal = ideal_hit_rate(mix, DEFAULT_L2_ENTRIES)
    checks = [_served_check(l2, "l2"), _served_check(l1, "l1"), _served_check(l3, "l3")]
    notes = [
        f"load: wrk {tool_version(['wrk', '--version'])}, {load.connections} connections, {load.threads} "
        f"threads, {load.duration_s:g} s per row after {warmup_s:g} s of unmeasured warm-up "
        f"({load.duration_s:g} s for the cold L2 row, none for the first row after the kill)",
        f"history: {seeded.incidents:,} incidents seeded ({seeded.outcomes:,} outcomes, {seeded.storms:,} "
        f"storms) in {seeded.seconds:.1f} s",
        f"key mix: {len(mix):,} keys; {100 * BY_ID_SHARE:.0f} % of requests by id over {len(ids):,} "
        f"incidents, the rest list queries (namespace x severity x phase filters, limit {LIST_LIMIT}), "
        f"each Zipf with s = {EXPONENT:g}; every key requested through l2-warm before the rows ({walks} "
        f"walk(s), {warm_s:.0f} s), which fills L2 there and L1 for every replica (L1 then held {held:,} "
        "entries)",
        f"L2 hit rate at {DEFAULT_L2_ENTRIES:,} entries (default size and 30 s TTL, from the replica's "
        f"context_api_cache_* counters): {_pct(l2_default.l2_hit_rate)}; the best any cache of that size "
        f"can do on this mix: {_pct(ideal)}",
        "ratios: the first four rows' req/s over L3 only's; the paced rows (half L3 only's maximum rate) "
        "p99 over the mean p99 of the paced L3-only runs, except the first after the kill: over the L3-only "
        "runs just before and after it; at maximum rate, p99 over L3 only's (before and after)",
        f"how busy the machine was: 1-min load average {load_avg_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; reference INCR unpipelined on the Context-API's Redis "
        f"{reference.requests_per_s:,.0f}/s (a quiet machine like it: {REFERENCE_QUIET_PER_S:,}/s)",
        _verdict(
            f"target L2-hit req/s >= {TARGET_L2_OVER_L3:g}x L3 only",
            l2.ratio,
            TARGET_L2_OVER_L3,
            above=True,
        ),
        _verdict(
            f"target p99 with the Redis killed within {TARGET_DEGRADED_P99:g}x L3 only's at {rate:,}/s (mean "
            f"p99 of the {rounds} Redis-killed runs over that of the {len(l3_paced)} paced L3-only runs)",
            steady_ratio,
            TARGET_DEGRADED_P99,
            above=False,
        ),
        _verdict(
            f"the same in the first {load.duration_s:g} s after the kill (the breaker opening and the "
            "replica's first PostgreSQL loads after serving from L1)",
            first.ratio,
            TARGET_DEGRADED_P99,
            above=False,
        ),
        "L1 failures before the kill (Redis calls that failed or timed out, after each of which the replica "
        "stopped using L1 until a probe succeeded; from each replica's log): "
        + ", ".join(f"{name} {n}" for name, n in l1_failures.items()),
        *(c for c in checks if c is not None),
    ]
    if any(r.failed for r in rows):
        notes.append("WARNING: some rows had failed requests (failed column); their rates count them")
    return BenchReport(
        name="context-api",
        figures={
            "load": {"connections": load.connections, "threads": load.threads, "duration_s": load.duration_s},
            "history": {"incidents": seeded.incidents, "keys": len(mix), "zipf_s": EXPONENT},
            "l2_hit_rate_at_default_size": l2_default.l2_hit_rate,
            "l2_ideal_hit_rate_at_default_size": ideal,
            "rows": [r.as_json() for r in rows],
            "redis_killed_p99_over_l3_only": steady_ratio,
            "redis_killed_first_run_p99_over_l3_only": first.ratio,
        },
        tables=[rows_table(rows)],
        notes=notes,
    )


def _mean_p99(rows: list[CacheRow]) -> float:
    return sum(r.p99_ms for r in rows) / len(rows)


def _verdict(what: str, got: float | None, target: float, *, above: bool) -> str:
    if got is None:
        return f"{what}: not measured"
    met = got >= target if above else got <= target
    return f"{what}: {got:.2f}x, {'met' if met else 'MISSED'}"
