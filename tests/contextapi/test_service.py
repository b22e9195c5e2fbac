"""The real commands: `kubernaut context-api` as a process of the stack, and `kubernaut seed-history`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from kubernaut.redis.keys import OWNER_KEY
from kubernaut_tools.localstack import LocalStack, postgres


def _kubernaut(
    stack: LocalStack, *args: str, dsn: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBERNAUT_POSTGRES__DSN": dsn}
    argv = [sys.executable, "-m", "kubernaut", *args, "--config", str(stack.run.config_file)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)


async def test_service_process_serves_metrics_and_stops(
    stack: LocalStack, context_db: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNAUT_POSTGRES__DSN", context_db)
    monkeypatch.setenv("KUBERNAUT_POSTGRES__CONTEXT_API_DSN", context_db)
    monkeypatch.setenv("KUBERNAUT_CONTEXT_API__KEY_PREFIX", prefix)
    stack.stop_component("context-api")  # one started by another test runs on the stack's own database
    stack.start_service("context-api", timeout=30)
    try:
        headers = {"authorization": f"Bearer {stack.context_api_read_token}"}
        async with httpx.AsyncClient(base_url=stack.url("context-api"), headers=headers) as c:
            first = await c.get("/api/v1/incidents", params={"limit": 3})
            again = await c.get("/api/v1/incidents", params={"limit": 3})
            assert (first.status_code, first.headers["x-cache"]) == (200, "l3")
            assert (again.headers["x-cache"], again.content) == ("l2", first.content)
            assert len(first.json()["incidents"]) == 3
            assert (await c.get("/readyz")).status_code == 200
            assert (await c.get("/healthz")).json()["l1"] == "available"
            metrics = (await c.get("/metrics")).text
            assert 'context_api_requests_total{route="/api/v1/incidents",status="200"} 2.0' in metrics
            assert 'context_api_cache_hits_total{tier="l2"} 1.0' in metrics
            assert "context_api_l1_available 1.0" in metrics
    finally:
        stack.stop_component("context-api")
    assert stack.record("context-api") is None


async def test_service_refuses_a_redis_owned_by_the_gateway(
    stack: LocalStack, context_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNAUT_POSTGRES__DSN", context_db)
    monkeypatch.setenv("KUBERNAUT_POSTGRES__CONTEXT_API_DSN", context_db)
    redis = Redis(**stack.redis_auth(stack.topology.redis_context_port))
    log = stack.run.log("context-api")
    seen = log.stat().st_size if log.exists() else 0
    stack.stop_component("context-api")
    try:
        await redis.set(OWNER_KEY, "gateway")
        with pytest.raises(RuntimeError, match="exited during start-up"):
            stack.start_service("context-api", timeout=30)
        assert "context-api refuses to use" in log.read_text()[seen:]
        assert await redis.get(OWNER_KEY) == b"gateway"
    finally:
        stack.stop_component("context-api")
        await redis.delete(OWNER_KEY)
        await redis.aclose()


async def test_seed_history_inserts_a_hundred_thousand_consistent_incidents(stack: LocalStack) -> None:
    t = stack.topology
    admin = await asyncpg.connect(postgres.dsn(t.host, t.postgres_port, stack.postgres_password, "postgres"))
    dsn = postgres.dsn(t.host, t.postgres_port, stack.postgres_password, "contextapi_seed_test")
    try:
        await admin.execute('DROP DATABASE IF EXISTS "contextapi_seed_test" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "contextapi_seed_test"')
        start = time.monotonic()
        done = _kubernaut(stack, "seed-history", "--incidents", "100000", dsn=dsn)
        elapsed = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("inserted 100000 incidents")
        print(f"\nseed-history --incidents 100000: {elapsed:.1f} s ({done.stdout.strip()})")
        assert elapsed < 60
        # Same seed again on top: fingerprints already open must not be opened twice.
        again = _kubernaut(stack, "seed-history", "--incidents", "20000", dsn=dsn)
        assert again.returncode == 0, again.stderr

        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM remediation_requests") == 120_000
            assert await conn.fetchval("SELECT count(DISTINCT namespace) FROM remediation_requests") >= 8
            assert await conn.fetchval("SELECT count(DISTINCT signal_name) FROM remediation_requests") >= 10
            assert await conn.fetchval(  # 90 days back from each run's start, never in the future
                "SELECT min(first_seen) > now() - interval '90 days 10 minutes' AND max(first_seen) <= now()"
                " FROM remediation_requests"
            )
            mismatched = await conn.fetchval(
                """SELECT count(*) FROM remediation_requests r LEFT JOIN remediation_outcomes o
                   ON o.request_id = r.id
                   WHERE (r.phase IN ('completed', 'failed')) <> (o.request_id IS NOT NULL)
                      OR (r.phase = 'completed' AND NOT o.succeeded)
                      OR (r.phase = 'failed' AND o.succeeded)"""
            )
            assert mismatched == 0
            rate = await conn.fetchval("SELECT avg(succeeded::int) FROM remediation_outcomes")
            assert 0.6 < rate < 0.95
            assert await conn.fetchval("SELECT count(*) FROM storm_members") > 0
        finally:
            await conn.close()

        bad = _kubernaut(stack, "seed-history", "--incidents", "10", dsn="postgresql://nobody@127.0.0.1:1/x")
        assert bad.returncode == 1
        assert "cannot seed PostgreSQL" in bad.stderr
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "contextapi_seed_test" WITH (FORCE)')
        await admin.close()
