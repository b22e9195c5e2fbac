"""``kubernaut bench gateway-ingest``: alert ingestion against Alertmanager 0.25 on the same alerts, tool and
concurrency in one run, and the physical limit beneath (redis-benchmark EVALSHA on the gateway's master).

Rows per target: maximum rate for single alerts and 50-alert batches, each for the repeat-heavy and the
all-new mix; then single-alert latency paced at half the pacing target's maximum single-alert rate.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from kubernaut.bench import baseline
from kubernaut.bench.ingest import IngestRow, TargetFactory, add_ratios, paced_row, throughput_rows
from kubernaut.bench.redis_limit import EvalshaRow, evalsha
from kubernaut.bench.report import BenchReport, FigureTable, tool_version
from kubernaut.bench.wrk import Load
from kubernaut.localstack import LocalStack

# Until the gateway's own script is measured here: one INCR per call, the peers' reference figure.
REFERENCE_SCRIPT = "return redis.call('INCR', KEYS[1])"


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ingest_table(rows: list[IngestRow]) -> FigureTable:
    return FigureTable(
        "HTTP ingest (ratio: alerts/s over Alertmanager's; paced rows: p99 over Alertmanager's)",
        ("target", "shape", "mix", "req/s", "alerts/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "ratio"),
        [
            (
                r.target,
                r.shape if r.paced_at_per_s is None else f"{r.shape} @ {r.paced_at_per_s:,.0f}/s",
                r.mix,
                _fmt(r.requests_per_s),
                _fmt(r.alerts_per_s),
                _fmt(r.p50_ms, 2),
                _fmt(r.p90_ms, 2),
                _fmt(r.p99_ms, 2),
                str(r.non_2xx + r.socket_errors),
                _fmt(r.ratio_to_alertmanager, 2),
            )
            for r in rows
        ],
    )


def limit_table(rows: list[EvalshaRow]) -> FigureTable:
    return FigureTable(
        "Physical limit: redis-benchmark EVALSHA on the gateway group's master",
        ("script", "pipeline", "clients", "req/s", "p50 ms", "p99 ms", "Redis cmds/call"),
        [
            (
                r.script,
                "none" if r.pipeline == 1 else f"-P {r.pipeline}",
                str(r.clients),
                _fmt(r.requests_per_s),
                _fmt(r.p50_ms, 3),
                _fmt(r.p99_ms, 3),
                _fmt(r.redis_commands_per_call, 2),
            )
            for r in rows
        ],
    )


def redis_limit_rows(stack: LocalStack, requests: int, log: Callable[[str], None]) -> list[EvalshaRow]:
    master = stack.current_master()
    if master is None:
        raise RuntimeError("the gateway's Redis group has no master")
    with redis.Redis(host=master[0], port=master[1]) as r:
        sha = str(r.script_load(REFERENCE_SCRIPT))
    rows = []
    for pipeline, n in ((1, requests), (16, 4 * requests)):
        log(f"redis-benchmark: EVALSHA reference INCR, pipeline {pipeline}, {n:,} calls")
        rows.append(
            evalsha(
                *master,
                script="reference INCR",
                sha=sha,
                keys=["gw:bench:__rand_int__"],
                args=[],
                pipeline=pipeline,
                requests=n,
            )
        )
    return rows


def run(stack: LocalStack, *, quick: bool, log: Callable[[str], None]) -> BenchReport:
    load = Load(duration_s=3 if quick else 10)
    log("starting the gateway's Redis group and PostgreSQL")
    stack.up(services=False, timeout=120)
    workdir = stack.run.component_dir("bench")
    workdir.mkdir(exist_ok=True)

    targets: dict[str, TargetFactory] = {"alertmanager": lambda: baseline.alertmanager(stack)}
    rows: list[IngestRow] = []
    for start in targets.values():
        rows += throughput_rows(start, load, workdir, log)
    pacer = "gateway" if "gateway" in targets else "alertmanager"
    peak = next(r for r in rows if (r.target, r.shape, r.mix) == (pacer, "single", "repeat-heavy"))
    for start in targets.values():
        rows.append(paced_row(start, peak.requests_per_s / 2, load, workdir, log))
    add_ratios(rows)
    limit = redis_limit_rows(stack, 100_000 if quick else 1_000_000, log)

    versions = {
        "wrk": tool_version(["wrk", "--version"]),
        "alertmanager": tool_version(["prometheus-alertmanager", "--version"]),
        "redis": tool_version(["redis-server", "--version"]),
    }
    notes = [
        f"load: wrk {versions['wrk']}, {load.connections} connections, {load.threads} threads, "
        f"{load.duration_s:g} s per row; every row on a freshly started target",
        f"baseline: Alertmanager {versions['alertmanager']} (Debian); Redis {versions['redis']}",
        "mixes: repeat-heavy = 9 fixed batches sent once beforehand + 1 never-seen batch, round-robin "
        "(90 % repeats); all-new = every alert never seen before",
        f"paced rows: single alerts at half of {pacer}'s maximum single-alert rate",
    ]
    if "gateway" not in targets:
        notes.append("gateway rows: not measured (the gateway is not in this build)")
    failed = [r for r in rows if r.non_2xx or r.socket_errors]
    if failed:
        notes.append(
            f"WARNING: {len(failed)} row(s) had failed requests (non-2xx column); their rates count them"
        )
    return BenchReport(
        name="gateway-ingest",
        figures={
            "load": {"connections": load.connections, "threads": load.threads, "duration_s": load.duration_s},
            "versions": versions,
            "rows": [r.as_json() for r in rows],
            "redis_limit": [r.as_json() for r in limit],
        },
        tables=[ingest_table(rows), limit_table(limit)],
        notes=notes,
    )
