"""The benchmark harness against real servers, with a second of light load: the load script sends the
mixes it promises, pacing holds the rate down, and the EVALSHA helper counts Redis commands per call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from kubernaut.store.migrate import migrate_dsn
from kubernaut_tools.bench import baseline
from kubernaut_tools.bench.alerts import REPEATED_BATCHES, alertmanager_v2, batches
from kubernaut_tools.bench.errors import BenchError
from kubernaut_tools.bench.postgres_limit import LOCAL_COMMIT, TAG, cleanup, pgbench
from kubernaut_tools.bench.redis_limit import evalsha
from kubernaut_tools.bench.wrk import Load, WrkError, run_wrk
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.postgres import pg_bin
from tests.ports import free_port

LIGHT = Load(duration_s=1, connections=2, threads=1)


def alerts_held(url: str) -> int:
    return len(httpx.get(url, timeout=10).json())


def body_file(path: Path, mix: str) -> Path:
    path.write_text("\n".join(alertmanager_v2(b) for b in batches(mix, 1)) + "\n")  # type: ignore[arg-type]
    return path


def test_all_new_mix_sends_a_never_seen_alert_on_every_request(stack: LocalStack, tmp_path: Path) -> None:
    with baseline.alertmanager(stack, port=free_port()) as target:
        result = run_wrk(target.url, body_file(tmp_path / "b", "all-new"), LIGHT)
        assert result.requests > 10
        assert (result.non_2xx, result.socket_errors) == (0, 0)
        # Requests in flight when wrk stops reach the server without being counted: one per connection.
        assert result.requests <= alerts_held(target.url) <= result.requests + LIGHT.connections


def test_repeat_heavy_mix_repeats_nine_requests_in_ten(stack: LocalStack, tmp_path: Path) -> None:
    with baseline.alertmanager(stack, port=free_port()) as target:
        result = run_wrk(target.url, body_file(tmp_path / "b", "repeat-heavy"), LIGHT)
        assert result.requests > 10
        # One thread walks the bodies in order from the first; the never-seen one is every tenth. Besides
        # the R answered requests, the thread's request() also ran once when wrk checked the script before
        # starting (that body is never sent), and once for each connection's request still in flight when
        # wrk stopped (sent, unanswered): R + 1 + connections calls in all, the unique ones every tenth.
        held = alerts_held(target.url) - REPEATED_BATCHES
        assert result.requests // 10 <= held <= (result.requests + 1 + LIGHT.connections) // 10


def test_pacing_holds_the_asked_rate(stack: LocalStack, tmp_path: Path) -> None:
    with baseline.alertmanager(stack, port=free_port()) as target:
        result = run_wrk(target.url, body_file(tmp_path / "b", "repeat-heavy"), LIGHT, rate_per_s=200)
    # Pacing never runs ahead of the schedule: one request per 5 ms slot over the run (slots start at the
    # first delay and never catch up), plus each connection's first request, which wrk sends undelayed.
    # How close it gets to 200/s depends on the machine's load, so no lower bound beyond "it ran".
    assert 0 < result.requests <= 200 * result.duration_s + 1 + LIGHT.connections


def test_the_baseline_is_stopped_by_pid(stack: LocalStack) -> None:
    with baseline.alertmanager(stack, port=free_port()) as target:
        record = stack.table.get(baseline.NAME)
        assert record is not None
    assert stack.table.get(baseline.NAME) is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(target.url, timeout=2)


def test_wrk_failure_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WrkError, match="Connection refused"):
        run_wrk(f"http://127.0.0.1:{free_port()}/", body_file(tmp_path / "b", "all-new"), LIGHT)


def test_evalsha_counts_redis_commands_per_call(stack: LocalStack) -> None:
    # The figure is the master's commands over the run: the stack's gateway, left running by an earlier
    # module, would add its count flushers' takes (a test that needs it starts it again: `gateway_url`).
    stack.stop_component("gateway")
    master = stack.current_master()
    assert master is not None
    password = stack.redis_password(master[1])
    with redis.Redis(*master, password=password) as r:
        sha = str(r.script_load("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"))
    row = evalsha(
        *master,
        script="set+incr",
        sha=sha,
        keys=["gw:test:a:__rand_int__", "gw:test:b:__rand_int__"],
        args=["v"],
        pipeline=4,
        requests=2000,
        clients=4,
        password=password,
    )
    assert row.requests_per_s > 0
    assert row.redis_commands_per_call == pytest.approx(3.0, abs=0.05)
    with pytest.raises(BenchError, match="NOSCRIPT"):
        evalsha(
            *master,
            script="x",
            sha="0" * 40,
            keys=["k"],
            args=[],
            pipeline=1,
            requests=10,
            clients=1,
            password=password,
        )


def _pgbench_rows(dsn: str) -> tuple[int, int, int]:
    """(new requests, storm members, storm_alert_count) the pgbench scripts left."""

    async def query() -> tuple[int, int, int]:
        await migrate_dsn(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE NOT is_storm) AS singles,"
                " (SELECT count(*) FROM storm_members m JOIN remediation_requests s ON s.id = m.request_id"
                "  WHERE s.namespace = $1) AS members,"
                " coalesce(sum(storm_alert_count), 0) AS counted"
                " FROM remediation_requests WHERE namespace = $1",
                TAG,
            )
        finally:
            await conn.close()
        assert row is not None
        return int(row["singles"]), int(row["members"]), int(row["counted"])

    return asyncio.run(query())


def test_pgbench_runs_the_gateways_commit_and_cleans_up(stack: LocalStack) -> None:
    dsn = stack.postgres_dsn
    assert _pgbench_rows(dsn) == (0, 0, 0)
    try:
        new = pgbench(
            pg_bin("pgbench"), dsn, script="new requests", alerts=5, clients=2, seconds=1, max_affected=3
        )
        storm = pgbench(
            pg_bin("pgbench"), dsn, script="storm members", alerts=5, clients=1, seconds=1, max_affected=3
        )
        local = pgbench(
            pg_bin("pgbench"), dsn, script=LOCAL_COMMIT, alerts=5, clients=1, seconds=1, max_affected=3
        )
        assert new.transactions > 0
        assert storm.transactions > 0
        assert local.transactions > 0
        assert (new.failed, storm.failed, local.failed) == (0, 0, 0)
        assert new.alerts_per_s == pytest.approx(5 * new.commits_per_s)
        # Every commit wrote its alerts: new requests, storm members and the storm row's count (both storm
        # scripts join the same storm row).
        members = 5 * (storm.transactions + local.transactions)
        assert _pgbench_rows(dsn) == (5 * new.transactions, members, members)
    finally:
        cleanup(dsn, pg_bin("psql"))
    assert _pgbench_rows(dsn) == (0, 0, 0)
