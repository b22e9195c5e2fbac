"""``kubernaut bench isolation``: the seed's contention claim. The Context-API's p99 under a fixed, moderate
read load while the gateway is driven at its maximum rate by a storm, against the same with the gateway
idle, in each of three setups:

- ``separate``: the seed's decision: the gateway on its Sentinel group, the Context-API on its own Redis;
  the whole gateway side (the group's master included) on the core the Context-API does not use;
- ``separate, master on core 0``: the same topology with the group's master moved to the Context-API's
  core: the CPU contention of the shared setup without sharing a Redis server (the control);
- ``shared``: the Context-API's L1 on the group's master (core 0), both services with allow_shared_redis,
  after showing that the Context-API refuses that Redis without the flag.

Each setup starts on flushed Redis servers with freshly started services. The Context-API replica runs with
a one-entry L2 aging out in 1 ms, after every key was requested once (filling L1), so each request reads
L1 from Redis unless its circuit breaker has opened (the "from L1" column says how many did).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubernaut_tools.bench import gateway_target
from kubernaut_tools.bench.alerts import batches, webhook_v4
from kubernaut_tools.bench.contextapi_target import (
    LONG_TTL_S,
    TINY_L2,
    Replica,
    l1_entries,
    refusal,
    replica,
    seed,
    walk_all,
)
from kubernaut_tools.bench.errors import BenchError
from kubernaut_tools.bench.keymix import context_api_mix, write_key_file
from kubernaut_tools.bench.pinning import cores_of, pin
from kubernaut_tools.bench.redis_limit import command_calls
from kubernaut_tools.bench.report import BenchReport, FigureTable, tool_version
from kubernaut_tools.bench.wrk import Load, WrkResult, get_keys, run_wrk
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.alerting import WEBHOOK_PATH
from kubernaut_tools.localstack.processes import wait_until

INCIDENTS = 10_000
SEED = 9
# The Context-API's fixed, moderate load: paced reads from one wrk thread.
CONTEXT_RATE_PER_S = 200
CONTEXT_CONNECTIONS = 16
# The storm: 50-alert webhooks of one alert name in one namespace, every pod never seen before.
STORM_BATCH = 50
STORM_CONNECTIONS, STORM_THREADS = 50, 2
STORM_LEAD_S = 8.0  # the storm starts this much longer than the Context-API's run, to open first
CORE_CONTEXT, CORE_GATEWAY = "0", "1"
FROM_L1_EXPECTED = 0.99  # below this share, the notes say why answers came from PostgreSQL
PLACEMENT = (
    f"core {CORE_CONTEXT}: the Context-API replica, its wrk and its own Redis; core {CORE_GATEWAY}: the "
    "gateway, the storm's wrk, the group's replicas and Sentinels, and PostgreSQL (every backend); the "
    "group's master on the core each setup names"
)


@dataclass(frozen=True)
class Setup:
    name: str
    shared: bool  # the Context-API's L1 on the gateway group's master
    master_core: str


SETUPS = (
    Setup("separate", shared=False, master_core=CORE_GATEWAY),
    Setup("separate, master on core 0", shared=False, master_core=CORE_CONTEXT),
    Setup("shared", shared=True, master_core=CORE_CONTEXT),
)


@dataclass
class IsolationRow:
    setup: str
    gateway: str  # idle | storm
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failed: int
    served_by_l1: float  # share of the Context-API's answers read from L1
    l1_reads_per_s: float  # MGET calls on the Context-API's Redis (the gateway sends none)
    # From the phase's start (before the storm) to the end of the run:
    l1_failures: int  # times the replica stopped using L1 (its breaker left CLOSED)
    postgres_invalidations: int  # invalidations PostgreSQL announced to it (requests the gateway wrote)
    gateway_alerts_per_s: float | None  # the storm's rate over its whole run
    gateway_failed: int | None  # the storm's requests answered > 399 or lost (socket errors)
    master_commands_per_s: float  # on the gateway group's master, during the Context-API's run
    ratio_to_idle: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Running:
    """One setup's services: the Context-API replica and the Redis servers it and the gateway use."""

    context_api: Replica
    master: tuple[str, int]
    context_redis: tuple[str, int]
    refused: str | None  # the shared setup: what the Context-API said without allow_shared_redis
    master_password: str
    context_redis_password: str


@dataclass(frozen=True)
class Storm:
    """How to drive the gateway: its webhook URL, the storm's body file and the bearer token."""

    url: str
    body_file: Path
    token: str

    def drive(self, duration_s: float, salt: str) -> WrkResult:
        load = Load(duration_s, STORM_CONNECTIONS, STORM_THREADS)
        headers = (f"Authorization: Bearer {self.token}",)
        return run_wrk(self.url, self.body_file, load, headers=headers, salt=salt, cpus=CORE_GATEWAY)

    def opened(self) -> bool:
        text = httpx.get(self.url.removesuffix(WEBHOOK_PATH) + "/metrics", timeout=5).text
        return any(
            s.value > 0
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "gateway_storms_detected_total"
        )


def _configure_gateway(stack: LocalStack, shared: bool) -> None:
    """Shadow rate limiting (as for gateway-ingest) and the sharing flag, in the stack's configuration."""
    gateway_target.configure(stack)
    config = yaml.safe_load(stack.run.config_file.read_text())
    config["gateway"]["allow_shared_redis"] = shared
    stack.run.config_file.write_text(yaml.safe_dump(config, sort_keys=False))


def _flush(stack: LocalStack, *servers: tuple[str, int]) -> None:
    for host, port in servers:
        with redis.Redis(host=host, port=port, password=stack.redis_password(port), socket_timeout=5) as r:
            r.flushall()


@contextmanager
def _services(stack: LocalStack, setup: Setup, log: Callable[[str], None]) -> Iterator[Running]:
    """The gateway and a Context-API replica started for ``setup`` on flushed Redis servers."""
    t = stack.topology
    master = stack.master_node().addr
    own = (t.host, t.redis_context_port)
    _flush(stack, master, own)
    _configure_gateway(stack, setup.shared)
    log(f"{setup.name}: starting the gateway (allow_shared_redis: {str(setup.shared).lower()})")
    stack.start_service("gateway", timeout=60)
    try:
        section: dict[str, Any] = {"l2": TINY_L2, "l1": {"ttl_s": LONG_TTL_S}}
        context_redis, refused = own, None
        if setup.shared:
            context_redis = master
            section["redis"] = {
                "host": master[0],
                "port": master[1],
                "password": stack.redis_password(master[1]),
            }
            refused = refusal(stack, "bench-context-api-unshared", t.context_http, section, "refuses to use")
            log(f"shared: without allow_shared_redis the Context-API refused: {refused}")
            section["allow_shared_redis"] = True
        with replica(stack, "bench-context-api", t.context_http, section) as context_api:
            passwords = stack.redis_password(master[1]), stack.redis_password(context_redis[1])
            yield Running(context_api, master, context_redis, refused, *passwords)
    finally:
        stack.stop_component("gateway")


def _pin(stack: LocalStack, running: Running, setup: Setup) -> list[str]:
    """Pin every process as PLACEMENT and ``setup`` say; return "name: cores", read back from the kernel."""
    placement = {running.context_api.name: CORE_CONTEXT, "redis-context": CORE_CONTEXT}
    for node in stack.nodes():
        placement[node.name] = setup.master_core if node.port == running.master[1] else CORE_GATEWAY
    for s in stack.sentinels():
        placement[s.name] = CORE_GATEWAY
    placement["gateway"] = CORE_GATEWAY
    if stack.postgres_ha:
        # The primary takes the gateway's writes; the standby serves the Context-API's reads (read_dsn).
        primary = stack.pg_ha.primary()
        for pg_node in stack.pg_ha.nodes():
            on_gateway = primary is not None and pg_node.name == primary.name
            placement[pg_node.name] = CORE_GATEWAY if on_gateway else CORE_CONTEXT
        placement["etcd"] = CORE_GATEWAY
    else:
        placement["postgres"] = CORE_GATEWAY
    seen = []
    for name, cpus in placement.items():
        rec = running.context_api.record if name == running.context_api.name else stack.record(name)
        if rec is None:
            raise BenchError(f"cannot pin {name}: it is not running")
        pin(rec.pid, cpus)
        seen.append(f"{name} {','.join(map(str, sorted(cores_of(rec.pid))))}")
    if stack.master_node().addr != running.master:
        raise BenchError("the gateway group's master changed during the benchmark")
    return seen


def _phase(
    setup: Setup,
    running: Running,
    storm: Storm | None,
    key_file: Path,
    duration_s: float,
    log: Callable[[str], None],
) -> IsolationRow:
    """The Context-API's paced run, alone or inside a storm that opens before it and ends after it."""
    load = Load(duration_s, CONTEXT_CONNECTIONS, threads=1)
    url = running.context_api.url
    auth = running.context_api.auth
    warm = Load(2, CONTEXT_CONNECTIONS, 1)
    get_keys(url, key_file, warm, rate_per_s=CONTEXT_RATE_PER_S, cpus=CORE_CONTEXT, headers=auth)
    # From before the storm: its first request, announced by PostgreSQL, invalidates cached answers.
    failures, counters = running.context_api.l1_failures(), running.context_api.counters()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="storm") as pool:
        storming = None
        if storm is not None:
            storming = pool.submit(storm.drive, duration_s + STORM_LEAD_S, f"{len(setup.name):04x}")
            wait_until(
                lambda: storming.done() or storm.opened(),
                timeout=STORM_LEAD_S / 2,
                what="the gateway to open a storm",
            )
            if storming.done():
                storming.result()  # raises what ended the storm's load early
        log(f"{setup.name}, gateway {'storm' if storm else 'idle'}: Context-API at {CONTEXT_RATE_PER_S}/s")

        def master_total() -> int:
            return command_calls(*running.master, password=running.master_password)

        def l1_total() -> int:
            return command_calls(*running.context_redis, only="mget", password=running.context_redis_password)

        before = master_total(), l1_total()
        result = get_keys(url, key_file, load, rate_per_s=CONTEXT_RATE_PER_S, cpus=CORE_CONTEXT, headers=auth)
        master_calls = master_total() - before[0]
        l1_reads = l1_total() - before[1]
        failures = running.context_api.l1_failures() - failures
        invalidations = (running.context_api.counters() - counters).postgres_invalidations
        storm_result = storming.result() if storming is not None else None
    answered = sum(result.served_by.values())
    return IsolationRow(
        setup.name,
        "idle" if storm is None else "storm",
        result.requests_per_s,
        result.latency_ms["50"],
        result.latency_ms["90"],
        result.latency_ms["99"],
        result.non_2xx + result.socket_errors,
        result.served_by.get("l1", 0) / answered if answered else 0.0,
        l1_reads / result.duration_s,
        failures,
        round(invalidations),
        None if storm_result is None else storm_result.requests_per_s * STORM_BATCH,
        None if storm_result is None else storm_result.non_2xx + storm_result.socket_errors,
        master_calls / result.duration_s,
    )


def rows_table(rows: list[IsolationRow]) -> FigureTable:
    def fmt(v: float | None, digits: int = 0) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    return FigureTable(
        "Context-API with the gateway idle and in a storm (ratio: p99 over the same setup's idle p99)",
        (
            *("setup", "gateway", "Context-API req/s", "p50 ms", "p90 ms", "p99 ms", "failed", "from L1"),
            *("L1 reads/s", "gateway alerts/s", "gateway failed", "master cmds/s", "ratio"),
        ),
        [
            (
                r.setup,
                r.gateway,
                fmt(r.requests_per_s),
                fmt(r.p50_ms, 2),
                fmt(r.p90_ms, 2),
                fmt(r.p99_ms, 2),
                str(r.failed),
                f"{100 * r.served_by_l1:.1f} %",
                fmt(r.l1_reads_per_s),
                fmt(r.gateway_alerts_per_s),
                "-" if r.gateway_failed is None else str(r.gateway_failed),
                fmt(r.master_commands_per_s),
                fmt(r.ratio_to_idle, 2),
            )
            for r in rows
        ],
    )


def run(stack: LocalStack, *, quick: bool, log: Callable[[str], None]) -> BenchReport:
    if not {int(CORE_CONTEXT), int(CORE_GATEWAY)} <= os.sched_getaffinity(0):
        raise BenchError(f"the isolation benchmark pins to cores {CORE_CONTEXT} and {CORE_GATEWAY}")
    duration_s = 3 if quick else 10
    load_avg_before = os.getloadavg()[0]
    log("starting PostgreSQL and the Redis servers")
    stack.up(services=False, timeout=120)
    log(f"seeding {INCIDENTS:,} incidents")
    ids, _seeded = seed(stack, INCIDENTS, SEED)
    mix = context_api_mix(ids, SEED)
    workdir = stack.run.component_dir("bench")
    workdir.mkdir(exist_ok=True)
    key_file = workdir / "isolation.keys"
    write_key_file(key_file, mix)
    storm_body = workdir / "storm.bodies"
    storm_body.write_text(webhook_v4(batches("all-new", STORM_BATCH)[0]) + "\n")
    prefix = stack.settings().context_api.key_prefix

    rows: list[IsolationRow] = []
    ratios: dict[str, float] = {}
    placements: dict[str, str] = {}
    held: dict[str, int] = {}
    refused = ""
    for setup in SETUPS:
        with _services(stack, setup, log) as running:
            refused = running.refused or refused
            placements[setup.name] = "; ".join(_pin(stack, running, setup))
            walk_all(running.context_api, key_file, len(mix), log)
            held[setup.name] = l1_entries(running.context_redis, prefix, running.context_redis_password)
            storm = Storm(stack.url("gateway") + WEBHOOK_PATH, storm_body, stack.gateway_token)
            idle = _phase(setup, running, None, key_file, duration_s, log)
            stormy = _phase(setup, running, storm, key_file, duration_s, log)
        ratios[setup.name] = stormy.p99_ms / idle.p99_ms
        idle.ratio_to_idle, stormy.ratio_to_idle = 1.0, round(ratios[setup.name], 3)
        rows += [idle, stormy]

    separate, control, shared = (ratios[s.name] for s in SETUPS)
    notes = [
        f"load: the Context-API paced at {CONTEXT_RATE_PER_S}/s (wrk {tool_version(['wrk', '--version'])}, "
        f"1 thread, {CONTEXT_CONNECTIONS} connections, {duration_s:g} s after 2 s unmeasured) over the Zipf "
        f"mix of {len(mix):,} keys ({INCIDENTS:,} seeded incidents); the storm: wrk at the gateway's "
        f"maximum rate, {STORM_CONNECTIONS} connections, {STORM_THREADS} threads, {STORM_BATCH}-alert "
        "webhooks of one alert name in one namespace, every pod never seen before, opening a storm before "
        "the Context-API's run and lasting until after it",
        "Context-API: L2 of one entry aging out in 1 ms, every key requested once beforehand (L1 then held "
        + ", ".join(f"{n:,} entries ({s})" for s, n in held.items())
        + "), so each request reads L1 from Redis unless the breaker opened ('from L1'; 'L1 reads/s' counts "
        "MGET calls on its Redis, which the gateway never sends)",
        f"placement (taskset): {PLACEMENT}; read back per setup: "
        + " | ".join(f"{name}: {p}" for name, p in placements.items()),
        "method: 'separate' is the seed's topology with each side on its own core; the control "
        "'separate, master on core 0' puts the gateway's master on the Context-API's core, as sharing "
        "must, without sharing the server; 'shared' puts the Context-API's L1 on that master. The "
        "control's ratio over separate's is the CPU contention of that placement; shared's over the "
        "control's (same placement) is Redis contention alone",
        f"p99 storm/idle: separate {separate:.2f}x, control {control:.2f}x, shared {shared:.2f}x; "
        f"CPU contention (control/separate) {control / separate:.2f}x, "
        f"Redis contention (shared/control) {shared / control:.2f}x",
        f"shared setup: the Context-API pointed at the gateway's master without allow_shared_redis exited: "
        f"{refused}",
        f"how busy the machine was: 1-min load average {load_avg_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; other helpers' work is not pinned and runs on both cores",
    ]
    for r in rows:
        if r.served_by_l1 < FROM_L1_EXPECTED:
            notes.append(
                f"{r.setup}, gateway {r.gateway}: {100 * r.served_by_l1:.1f} % of the Context-API's answers "
                f"came from L1, the rest from PostgreSQL; from the storm's start to the run's end it stopped "
                f"using L1 {r.l1_failures} time(s) (a Redis call failed or outlasted its 50 ms socket "
                f"timeout) and PostgreSQL announced {r.postgres_invalidations} invalidation(s) (requests the "
                "gateway wrote), each dropping the cached answers it touches until they are read again"
            )
    if any(r.failed for r in rows):
        notes.append("WARNING: some runs had failed requests (failed column)")
    return BenchReport(
        name="isolation",
        figures={
            "context_api_rate_per_s": CONTEXT_RATE_PER_S,
            "duration_s": duration_s,
            "placement": placements,
            "rows": [r.as_json() for r in rows],
            "p99_ratio": {name: round(r, 3) for name, r in ratios.items()},
            "cpu_contention": round(control / separate, 3),
            "redis_contention": round(shared / control, 3),
            "refusal_without_flag": refused,
        },
        tables=[rows_table(rows)],
        notes=notes,
    )
