"""``kubernaut bench gateway-ingest``: the gateway against Alertmanager 0.25 on the same alerts, tool and
concurrency in one run, and the physical limits beneath (redis-benchmark EVALSHA on the gateway's master;
pgbench running the gateway's commit on its PostgreSQL).

Rows per target: maximum rate for single alerts and 50-alert batches, each for the repeat-heavy and the
all-new mix; then single-alert latency of both, paced at half the gateway's maximum single-alert rate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kubernaut import httpserver
from kubernaut.gateway.ingest_protocol import encode, settings_args
from kubernaut_tools.bench import baseline, gateway_target
from kubernaut_tools.bench.ingest import IngestRow, TargetFactory, add_ratios, paced_row, throughput_rows
from kubernaut_tools.bench.postgres_limit import LOCAL_COMMIT, PgbenchRow, cleanup, pgbench
from kubernaut_tools.bench.redis_limit import EvalshaRow, evalsha
from kubernaut_tools.bench.report import BenchReport, FigureTable, tool_version
from kubernaut_tools.bench.wrk import Load
from kubernaut_tools.localstack import LocalStack, redis_servers
from kubernaut_tools.localstack.postgres import pg_bin
from kubernaut_tools.localstack.stack import service_available

# One INCR per call: the peers' reference figure for EVALSHA on this kind of machine, when quiet.
REFERENCE_SCRIPT = "return redis.call('INCR', KEYS[1])"
REFERENCE_QUIET_PER_S = 77_500
# This round's targets (issue 9), as ratios to Alertmanager and an absolute p99.
# Issue 16's targets: the gateway's alerts/s over Alertmanager's per (shape, mix), and the paced p99 at
# most this many times Alertmanager's at the same rate.
TARGET_RATIOS = {
    ("batch-50", "repeat-heavy"): 1.0,
    ("batch-50", "all-new"): 0.6,
    ("single", "repeat-heavy"): 0.4,
    ("single", "all-new"): 0.2,
}
TARGET_PACED_P99_RATIO = 3.0


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def ingest_table(rows: list[IngestRow]) -> FigureTable:
    return FigureTable(
        "HTTP ingest (ratio: alerts/s over Alertmanager's; paced rows: p99 over Alertmanager's)",
        (
            *("target", "shape", "mix", "req/s", "alerts/s", "p50 ms", "p90 ms", "p99 ms"),
            *("non-2xx", "Redis cmds/alert", "ratio"),
        ),
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
                _fmt(r.redis_commands_per_alert, 2),
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


def postgres_table(rows: list[PgbenchRow]) -> FigureTable:
    return FigureTable(
        "PostgreSQL limit: pgbench running the gateway's new-alert commit on the bench's PostgreSQL",
        ("script", "alerts/commit", "connections", "commits/s", "alerts/s", "latency avg ms", "failed"),
        [
            (
                r.script,
                str(r.alerts_per_commit),
                str(r.clients),
                _fmt(r.commits_per_s),
                _fmt(r.alerts_per_s),
                _fmt(r.latency_ms, 2),
                str(r.failed),
            )
            for r in rows
        ],
    )


# (script, new alerts a commit, connections): the gateway's own shape (one committing connection, a
# group of new alerts a commit: one 50-alert webhook, or a group of ten), then one alert a commit from as
# many connections as wrk has (no group commit of our own: only PostgreSQL's WAL flush grouping).
PGBENCH_RUNS = (
    ("storm members", 50, 1),
    ("storm members", 500, 1),
    ("new requests", 50, 1),
    ("new requests", 1, 50),
)


def postgres_limit_rows(stack: LocalStack, seconds: float, log: Callable[[str], None]) -> list[PgbenchRow]:
    dsn = stack.postgres_dsn
    max_affected = stack.settings().gateway.storm.max_affected_resources
    runs = list(PGBENCH_RUNS)
    if stack.postgres_ha:
        runs[1:1] = [(LOCAL_COMMIT, 50, 1)]
    rows = []
    try:
        for script, alerts, clients in runs:
            log(f"pgbench: {script}, {alerts} alert(s) a commit, {clients} connection(s), {seconds:g} s")
            rows.append(
                pgbench(
                    pg_bin("pgbench"),
                    dsn,
                    script=script,
                    alerts=alerts,
                    clients=clients,
                    seconds=seconds,
                    max_affected=max_affected,
                )
            )
    finally:
        cleanup(dsn, pg_bin("psql"))
    return rows


def _postgres_fractions(rows: list[IngestRow], limit: list[PgbenchRow]) -> list[str]:
    """The gateway's all-new alert rates as fractions of PostgreSQL's on the gateway's own commit shape."""
    shapes = [r for r in limit if (r.script, r.clients) == ("storm members", 1) and r.alerts_per_s]
    if not shapes:
        return []
    shape = max(shapes, key=lambda r: r.alerts_per_s)
    notes = []
    for r in rows:
        if (r.target, r.mix, r.paced_at_per_s) == ("gateway", "all-new", None):
            fraction = r.alerts_per_s / shape.alerts_per_s
            notes.append(
                f"gateway {r.shape} all-new: {r.alerts_per_s:,.0f} alerts/s = {fraction:.2f}"
                f" of PostgreSQL's {shape.alerts_per_s:,.0f}/s (pgbench, the gateway's storm-member commit, "
                f"{shape.alerts_per_commit} alerts a commit, 1 connection)"
            )
    return notes


@dataclass(frozen=True, slots=True)
class _BenchSignal:
    """A firing alert whose fingerprint and pod redis-benchmark randomises per call (``__rand_int__``)."""

    firing: bool = True
    fingerprint: str = "fp__rand_int__"
    name: str = "BenchAlert"
    namespace: str = "bench"
    resource: str = "Pod/bench-__rand_int__"
    starts_at: datetime | None = None


def _gateway_script_args(stack: LocalStack, signals: int) -> list[str]:
    """The gateway's ingest script arguments for ``signals`` never-seen firing alerts of one group."""
    settings = stack.settings().gateway
    args = encode(settings.key_prefix, "bench", "bench", settings_args(settings), [_BenchSignal()] * signals)
    return [str(arg) for arg in args]


def redis_limit_rows(
    stack: LocalStack, requests: int, with_gateway: bool, log: Callable[[str], None]
) -> list[EvalshaRow]:
    """The reference INCR and, with the gateway, its ingest script for 1 and 50 alerts per call."""
    host, port = stack.master_node().addr
    password = stack.redis_password(port)
    runs: list[tuple[str, bytes | str, list[str], list[str], int, int]] = [
        ("reference INCR", REFERENCE_SCRIPT, ["gw:bench:__rand_int__"], [], 1, requests),
        ("reference INCR", REFERENCE_SCRIPT, ["gw:bench:__rand_int__"], [], 16, 4 * requests),
    ]
    if with_gateway:
        from kubernaut.gateway.redis_state import INGEST

        one, fifty = _gateway_script_args(stack, 1), _gateway_script_args(stack, 50)
        runs += [
            ("gateway ingest, 1 alert", INGEST.source, [], one, 1, requests // 2),
            ("gateway ingest, 1 alert", INGEST.source, [], one, 16, 2 * requests),
            ("gateway ingest, 50 alerts", INGEST.source, [], fifty, 1, requests // 50),
        ]
    rows = []
    for script, source, keys, args, pipeline, n in runs:
        with redis_servers.client(host, port, password, timeout=10.0) as r:
            sha = str(r.script_load(source))
        log(f"redis-benchmark: EVALSHA {script}, pipeline {pipeline}, {n:,} calls")
        rows.append(
            evalsha(
                host,
                port,
                script=script,
                sha=sha,
                keys=keys,
                args=args,
                pipeline=pipeline,
                requests=n,
                password=password,
            )
        )
    return rows


def _verdicts(rows: list[IngestRow]) -> list[str]:
    """This round's targets, met or missed, from the gateway's rows."""

    def gateway_row(shape: str, mix: str, paced: bool = False) -> IngestRow | None:
        return next(
            (
                r
                for r in rows
                if (r.target, r.shape, r.mix, r.paced_at_per_s is not None) == ("gateway", shape, mix, paced)
            ),
            None,
        )

    notes = []
    for (shape, mix), target in TARGET_RATIOS.items():
        r = gateway_row(shape, mix)
        if r is not None and r.ratio_to_alertmanager is not None:
            got = r.ratio_to_alertmanager
            verdict = "met" if got >= target else "MISSED"
            notes.append(f"target {shape} {mix} >= {target:g}x Alertmanager: {got:.2f}x, {verdict}")
    paced = gateway_row("single", "repeat-heavy", paced=True)
    if paced is not None and paced.ratio_to_alertmanager is not None:
        got = paced.ratio_to_alertmanager
        verdict = "met" if got <= TARGET_PACED_P99_RATIO else "MISSED"
        notes.append(
            f"target p99 <= {TARGET_PACED_P99_RATIO:g}x Alertmanager's at half the maximum rate "
            f"({paced.requests_per_s:,.0f}/s): {paced.p99_ms:.2f} ms = {got:.2f}x, {verdict}"
        )
    return notes


def run(
    stack: LocalStack, *, quick: bool, log: Callable[[str], None], scale: gateway_target.Scale | None = None
) -> BenchReport:
    scale = scale or gateway_target.Scale()
    load = Load(duration_s=3 if quick else 10)
    load_avg_before = os.getloadavg()[0]
    log("starting the gateway's Redis group and PostgreSQL")
    stack.up(services=False, timeout=120)
    gateway_target.configure(stack, scale)
    workdir = stack.run.component_dir("bench")
    workdir.mkdir(exist_ok=True)

    targets: dict[str, TargetFactory] = {"alertmanager": lambda: baseline.alertmanager(stack)}
    with_gateway = service_available("gateway")
    if with_gateway:
        targets["gateway"] = lambda: gateway_target.gateway(stack, scale)
    rows = throughput_rows(targets, load, workdir, log)
    pacer = "gateway" if with_gateway else "alertmanager"
    peak = next(r for r in rows if (r.target, r.shape, r.mix) == (pacer, "single", "repeat-heavy"))
    for start in targets.values():
        rows.append(paced_row(start, peak.requests_per_s / 2, load, workdir, log))
    add_ratios(rows)
    limit = redis_limit_rows(stack, 100_000 if quick else 500_000, with_gateway, log)
    pg_limit = postgres_limit_rows(stack, load.duration_s, log) if with_gateway else []

    versions = {
        "wrk": tool_version(["wrk", "--version"]),
        "alertmanager": tool_version(["prometheus-alertmanager", "--version"]),
        "redis": tool_version(["redis-server", "--version"]),
    }
    notes = [
        f"load: wrk {versions['wrk']}, {load.connections} connections, {load.threads} threads, "
        f"{load.duration_s:g} s per row; every row on a freshly started target, the targets back to back",
        f"baseline: Alertmanager {versions['alertmanager']} (Debian); Redis {versions['redis']}",
        "mixes: repeat-heavy = 9 fixed batches sent once beforehand + 1 never-seen batch, round-robin "
        "(90 % repeats); all-new = every alert never seen before",
        f"paced rows: single alerts at half of {pacer}'s maximum single-alert rate",
        f"how busy the machine was: 1-min load average {load_avg_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; reference INCR unpipelined {limit[0].requests_per_s:,.0f}/s "
        f"(a quiet machine like it: {REFERENCE_QUIET_PER_S:,}/s)",
    ]
    if with_gateway:
        notes.append(
            f"gateway: {scale.describe()} ({httpserver.default_workers()} usable cores); rate limiting in "
            "shadow mode; Redis flushed and requests emptied before each row"
        )
        notes += _verdicts(rows)
        notes.append(
            "PostgreSQL: "
            + ("Patroni cluster, synchronous standby" if stack.postgres_ha else "one server (no standby)")
        )
        notes += _postgres_fractions(rows, pg_limit)
        notes += [
            f"stored after gateway {r.shape}, {r.mix}{' paced' if r.paced_at_per_s else ''}: {r.check}"
            for r in rows
            if r.check is not None
        ]
    else:
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
            "postgres_limit": [r.as_json() for r in pg_limit],
        },
        tables=[ingest_table(rows), limit_table(limit), *([postgres_table(pg_limit)] if pg_limit else [])],
        notes=notes,
    )
