"""Pure parts of the benchmark harness: wrk and redis-benchmark output, pacing, ratios, RESULTS.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from kubernaut_tools.bench.contextapi_target import CacheCounters
from kubernaut_tools.bench.errors import BenchError
from kubernaut_tools.bench.ingest import IngestRow, add_ratios
from kubernaut_tools.bench.postgres_limit import parse as parse_pgbench
from kubernaut_tools.bench.redis_limit import parse_csv
from kubernaut_tools.bench.report import BenchReport, FigureTable, append, find_results_file
from kubernaut_tools.bench.wrk import Load, WrkError, parse_wrk_output

# A real run of post.lua against Alertmanager 0.25 (wrk 4.1.0, Debian).
WRK_STDOUT = """\
Running 2s test @ http://127.0.0.1:47393/api/v2/alerts
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    4.42ms  42.18ms   88.32%
    Req/Sec     5.24k     1.10k   10.74k    87.80%
  21387 requests in 2.10s, 1.82MB read
Requests/sec:  10181.84
Transfer/sec:      0.86MB
KUBERNAUT_WRK {"duration_us":2100504,"requests":21387,"bytes":1903443,"errors":{"connect":0,"read":0,\
"write":0,"status":0,"timeout":0},"latency_us":{"min":77,"max":42177,"mean":2608.1,"stdev":4420.5,\
"percentiles":{"50":610,"75":3029,"90":7956,"99":21150,"99.9":32648}}}
"""


def test_wrk_figures_line_is_parsed_exactly() -> None:
    r = parse_wrk_output(WRK_STDOUT)
    assert r.requests == 21387
    assert r.duration_s == pytest.approx(2.100504)
    assert r.requests_per_s == pytest.approx(10181.8, abs=0.1)  # wrk's own "Requests/sec" line agrees
    assert r.latency_ms == {"50": 0.61, "75": 3.029, "90": 7.956, "99": 21.15, "99.9": 32.648}
    assert r.mean_ms == pytest.approx(2.6081)
    assert r.max_ms == pytest.approx(42.177)
    assert (r.non_2xx, r.socket_errors) == (0, 0)


def test_wrk_errors_are_split_into_status_and_socket() -> None:
    out = WRK_STDOUT.replace('"connect":0,"read":0', '"connect":2,"read":3').replace(
        '"status":0,"timeout":0', '"status":7,"timeout":1'
    )
    r = parse_wrk_output(out)
    assert (r.non_2xx, r.socket_errors) == (7, 6)


def test_wrk_without_figures_names_what_it_said() -> None:
    with pytest.raises(WrkError, match=re.escape("unable to connect to 127.0.0.1:1 Connection refused")):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(WrkError, match="no output"):
        parse_wrk_output("")


def test_wrk_malformed_figures_line() -> None:
    with pytest.raises(WrkError, match="malformed"):
        parse_wrk_output('KUBERNAUT_WRK {"duration_us": 1}\n')
    with pytest.raises(WrkError, match="malformed"):
        parse_wrk_output("KUBERNAUT_WRK {not json\n")


@pytest.mark.parametrize(
    ("threads", "rate", "interval"), [(2, 5000, 0.4), (2, 4734, 0.42248), (1, 100, 10.0)]
)
def test_pacing_interval_per_thread(threads: int, rate: float, interval: float) -> None:
    assert Load(duration_s=1, threads=threads).interval_ms(rate) == pytest.approx(interval, abs=1e-5)


def test_redis_benchmark_csv() -> None:
    out = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
        '"p99_latency_ms","max_latency_ms"\n'
        '"EVALSHA 6163 1 k:__rand_int__","49019.61","0.598","0.184","0.543","0.951","1.615","2.791"\n'
    )
    assert parse_csv(out) == (49019.61, 0.543, 1.615)


def row(
    target: str, shape: str, mix: str, alerts_per_s: float, p99: float, paced: float | None = None
) -> IngestRow:
    return IngestRow(target, shape, mix, 1, alerts_per_s, alerts_per_s, 1.0, 2.0, p99, 0, 0, paced)


def test_ratios_compare_like_rows_by_their_headline() -> None:
    rows = [
        row("alertmanager", "single", "all-new", 10_000, 8.0),
        row("alertmanager", "single", "repeat-heavy", 20_000, 9.0),
        row("alertmanager", "single", "repeat-heavy", 5_000, 2.0, paced=5_000),
        row("gateway", "single", "all-new", 2_500, 30.0),
        row("gateway", "single", "repeat-heavy", 5_000, 40.0),
        row("gateway", "single", "repeat-heavy", 2_500, 4.0, paced=2_500),
        row("gateway", "batch-50", "all-new", 1_000, 1.0),
    ]
    add_ratios(rows)
    assert [r.ratio_to_alertmanager for r in rows] == [1.0, 1.0, 1.0, 0.25, 0.25, 2.0, None]
    assert rows[5].as_json()["headline"] == "p99_ms"


def test_results_file_is_found_and_appended(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "src" / "deep").mkdir(parents=True)
    results = find_results_file(tmp_path / "src" / "deep")
    assert results == tmp_path / "benchmarks" / "RESULTS.md"
    assert find_results_file(Path("/")) is None

    table = FigureTable("T", ("target", "shape", "mix", "req/s"), [("am", "single", "all-new", "1,000")])
    for _ in range(2):
        append(results, BenchReport("gateway-ingest", {}, [table], ["a note"], command="kubernaut bench x"))
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("## gateway-ingest, ") == 2
    assert "| am | single | all-new | 1,000 |" in text
    assert "|---|---|---|---:|" in text
    assert "- command: `kubernaut bench x`" in text


def test_wrk_figures_of_get_lua_carry_the_x_cache_counts_and_the_walk_position() -> None:
    line = WRK_STDOUT.splitlines()[-1]
    walked = line[:-1] + ',"x_cache":{"l1":5,"l2":21000,"l3":382,"none":0},"position":21390}\n'
    r = parse_wrk_output(walked)
    assert r.served_by == {"l1": 5, "l2": 21000, "l3": 382, "none": 0}
    assert r.position == 21390
    drawn = parse_wrk_output(line[:-1] + ',"x_cache":{"l1":0,"l2":0,"l3":7,"none":0}}\n')
    assert drawn.position is None
    plain = parse_wrk_output(WRK_STDOUT)
    assert (plain.served_by, plain.position) == ({}, None)
    with pytest.raises(WrkError, match="malformed"):
        parse_wrk_output(line[:-1] + ',"x_cache":[1,2]}\n')


def test_cache_counters_from_a_context_api_exposition() -> None:
    registry = CollectorRegistry()  # the contract's names and labels, as the Context-API exports them
    hits = Counter("context_api_cache_hits_total", "hits", ["tier"], registry=registry)
    misses = Counter("context_api_cache_misses_total", "misses", ["tier"], registry=registry)
    invalidations = Counter("context_api_invalidations_total", "inv", ["origin"], registry=registry)

    def read() -> CacheCounters:
        return CacheCounters.from_exposition(generate_latest(registry).decode())

    hits.labels("l2").inc(30)
    misses.labels("l2").inc(10)
    hits.labels("l1").inc(9)
    misses.labels("l1").inc(1)
    before = read()
    assert before == CacheCounters(l1_hits=9, l1_misses=1, l2_hits=30, l2_misses=10)
    assert before.hit_rate("l2") == pytest.approx(0.75)
    hits.labels("l2").inc(5)
    misses.labels("l2").inc(15)
    invalidations.labels("postgres").inc(4)
    invalidations.labels("local").inc(7)
    during = read() - before
    assert during.hit_rate("l2") == pytest.approx(0.25)
    assert during.postgres_invalidations == 4
    assert during.hit_rate("l1") is None  # no L1 lookups in between
    assert CacheCounters.from_exposition("") == CacheCounters()


PGBENCH_15 = """pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/kubernaut-pgbench-x/gateway.sql
scaling factor: 1
query mode: prepared
number of clients: 1
number of threads: 1
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 1234
number of failed transactions: 2 (0.162%)
latency average = 2.431 ms
initial connection time = 3.102 ms
tps = 411.338921 (without initial connection time)
"""


def test_pgbench_report() -> None:
    assert parse_pgbench(PGBENCH_15) == (1234, 411.338921, 2.431, 2)
    with pytest.raises(BenchError, match="tps"):
        parse_pgbench(PGBENCH_15.replace("tps =", "rate ="))
