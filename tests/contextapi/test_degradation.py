"""Invariant 4 on the real stack: the Context-API's Redis killed, frozen (SIGSTOP), absent at start, or
handed to the gateway. Every answer stays 200 and correct, latency falls back to that of an L3-only
replica once the breaker is open, and L1 comes back by itself. Redis is signalled by the PID the stack
recorded."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from kubernaut.config import Settings
from kubernaut.redis.keys import OWNER_KEY
from kubernaut_tools.localstack import LocalStack
from tests.contextapi.replicas import Replica, eventually, make_settings, open_replica

VIEWS: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/incidents", {"namespace": "payments", "limit": 20}),
    ("/api/v1/incidents", {"severity": "critical", "phase": "failed"}),
    ("/api/v1/incidents/7", {}),
    ("/api/v1/aggregations/success-rate", {"namespace": "checkout"}),
    ("/api/v1/aggregations/namespaces", {}),
    ("/api/v1/aggregations/severity", {}),
    ("/api/v1/aggregations/trend", {"days": 14}),
]
# Margin over the L3-only replica once the breaker is open: a ratio and an absolute slack for noise on a
# shared 2-core machine. A Redis timeout per request (50 ms) would exceed both by far.
RATIO, SLACK_S = 1.5, 0.010


def _settings(
    stack: LocalStack, dsn: str, prefix: str, timeouts: dict[str, float] | None = None, **extra: Any
) -> Settings:
    """The production timeouts (None), under test, unless a test names its own."""
    return make_settings(stack, dsn, prefix, timeouts=timeouts, **extra)


async def _timed(replica: Replica, path: str, **params: Any) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = await replica.get(path, **params)
    return r, time.perf_counter() - start


async def _cold_latencies(a: Replica, base: Replica, offsets: range) -> tuple[list[float], list[float]]:
    """Interleaved cold requests (a different page each: L3 every time) on ``a`` and the L3-only replica."""
    on_a, on_base = [], []
    for k in offsets:
        ra, ta = await _timed(a, "/api/v1/incidents", limit=20, offset=k)
        rb, tb = await _timed(base, "/api/v1/incidents", limit=20, offset=k)
        assert (ra.status_code, ra.headers["x-cache"]) == (200, "l3")
        assert ra.content == rb.content
        on_a.append(ta)
        on_base.append(tb)
    return on_a, on_base


async def _state(replica: Replica) -> tuple[float, float]:
    return (
        await replica.metric("context_api_breaker_state"),
        await replica.metric("context_api_l1_available"),
    )


async def _wait_state(replica: Replica, breaker: int, available: int, within: float = 10) -> None:
    async def reached() -> bool:
        return await _state(replica) == (breaker, available)

    await eventually(reached, within=within, what=f"breaker {breaker}, l1_available {available}")


async def _l1_serves(a: Replica, b: Replica, path: str, **params: Any) -> None:
    """A key new to both replicas: L3 on a, then (after a's background fill) L1 on b."""
    assert (await a.get(path, **params)).headers["x-cache"] == "l3"
    await a.api.cache.idle()
    assert (await b.get(path, **params)).headers["x-cache"] == "l1"


def _report(label: str, values: list[float]) -> str:
    return f"{label}: median {statistics.median(values) * 1000:.2f} ms, max {max(values) * 1000:.2f} ms"


async def test_redis_killed_then_restarted(redis_context: LocalStack, context_db: str, prefix: str) -> None:
    stack = redis_context
    settings = _settings(stack, context_db, prefix)
    l3_only = _settings(stack, context_db, prefix, l1={"enabled": False})
    async with open_replica(settings) as a, open_replica(settings) as b, open_replica(l3_only) as base:
        truth = [(await base.get(p, **q)).content for p, q in VIEWS]
        for p, q in VIEWS:  # cached in a's L2 and in L1; b has nothing local
            assert (await a.get(p, **q)).content == truth[VIEWS.index((p, q))]
        await a.api.cache.idle()

        stack.stop_component("redis-context", sig=signal.SIGKILL)
        assert stack.record("redis-context") is None

        for replica in (a, b, a, b):
            for (p, q), expected in zip(VIEWS, truth, strict=True):
                r = await replica.get(p, **q)
                assert r.status_code == 200
                assert r.content == expected
                assert r.headers["x-cache"] in ("l2", "l3")
        await _wait_state(a, breaker=2, available=0)
        await _wait_state(b, breaker=2, available=0)

        dead, l3 = await _cold_latencies(a, base, range(1, 41))
        warm = [(await _timed(a, *VIEWS[0][:1], **VIEWS[0][1]))[1] for _ in range(20)]
        print(f"\nredis dead, breaker open: {_report('a (cold)', dead)}; {_report('L3-only', l3)}")
        print(_report("redis dead, L2 hits", warm))
        assert statistics.median(dead) <= statistics.median(l3) * RATIO + SLACK_S

        stack.start_redis_context()
        await _wait_state(a, breaker=0, available=1)
        await _wait_state(b, breaker=0, available=1)
        await _l1_serves(a, b, "/api/v1/incidents", namespace="search", limit=7)
        redis = Redis(**stack.redis_auth(stack.topology.redis_context_port))
        try:
            assert await redis.get(OWNER_KEY) == b"context-api"  # re-claimed on the fresh server
        finally:
            await redis.aclose()


async def test_redis_frozen_then_resumed(redis_context: LocalStack, context_db: str, prefix: str) -> None:
    stack = redis_context
    # A socket timeout long against a loaded machine's stalls, so that one timeout per request (the
    # promise) stays apart from two: the bound allows 0.9 of a timeout's slack.
    timeouts = {"connect_s": 0.5, "socket_s": 0.5}
    settings = _settings(stack, context_db, prefix, timeouts)
    l3_only = _settings(stack, context_db, prefix, timeouts, l1={"enabled": False})
    async with open_replica(settings) as a, open_replica(settings) as b, open_replica(l3_only) as base:
        _, l3 = await _cold_latencies(a, base, range(100, 110))  # Redis healthy: what L3 costs here
        l3_max = max(l3)
        bound = 1.9 * timeouts["socket_s"] + l3_max

        assert stack.signal_component("redis-context", signal.SIGSTOP)
        # Both replicas still trust Redis: a meets the hung server with one request, b with five at once.
        single, t_single = await _timed(a, "/api/v1/incidents", limit=5, offset=1)
        assert single.status_code == 200
        burst = await asyncio.gather(
            *(_timed(b, "/api/v1/incidents", limit=5, offset=k) for k in range(2, 7))
        )
        assert all(r.status_code == 200 for r, _ in burst)
        hung = [t for _, t in burst]
        print(
            f"\nredis hung, first request: {t_single * 1000:.1f} ms; 5 concurrent: {_report('latency', hung)}"
            f" (bound {bound * 1000:.0f} ms = 1.9 socket timeouts + slowest L3 {l3_max * 1000:.1f} ms)"
        )
        assert max([t_single, *hung]) <= bound
        await _wait_state(a, breaker=2, available=0)
        frozen, base_l3 = await _cold_latencies(a, base, range(200, 230))
        print(f"redis hung, breaker open: {_report('a (cold)', frozen)}; {_report('L3-only', base_l3)}")
        assert statistics.median(frozen) <= statistics.median(base_l3) * RATIO + SLACK_S

        assert stack.signal_component("redis-context", signal.SIGCONT)
        await _wait_state(a, breaker=0, available=1)
        await _wait_state(b, breaker=0, available=1)
        await _l1_serves(a, b, "/api/v1/incidents", namespace="catalog", limit=9)


async def test_outcome_while_redis_is_frozen_is_replayed(
    redis_context: LocalStack, context_db: str, prefix: str, db: asyncpg.Connection
) -> None:
    stack = redis_context
    settings = _settings(stack, context_db, prefix)
    iid = await db.fetchval(
        """SELECT r.id FROM remediation_requests r LEFT JOIN remediation_outcomes o ON o.request_id = r.id
           WHERE o.request_id IS NULL ORDER BY r.id DESC LIMIT 1"""
    )
    path = f"/api/v1/incidents/{iid}"
    async with open_replica(settings) as a, open_replica(settings) as b:
        assert (await a.get(path)).json()["outcome"] is None
        await a.api.cache.idle()
        assert (await b.get(path)).headers["x-cache"] == "l1"

        assert stack.signal_component("redis-context", signal.SIGSTOP)
        r = await a.client.post(f"{path}/outcome", json={"action": "restart_pod", "succeeded": True})
        assert r.status_code == 200
        assert (await a.get(path)).json()["outcome"]["action"] == "restart_pod"  # a's own L2 dropped it
        assert stack.signal_component("redis-context", signal.SIGCONT)

        # b hears of the outcome from PostgreSQL too, and its attempt to drop the L1 entry on the frozen
        # Redis is kept for replay like a's: once L1 is back on, it must not hold the stale answer.
        async def l1_back(replica: Replica) -> bool:
            return bool((await replica.get("/healthz")).json()["l1"] == "available")

        for replica in (a, b):
            await eventually(
                lambda r=replica: l1_back(r),  # type: ignore[misc]
                within=30,
                what="L1 back after the replay",
            )
        b.api.cache.l2.invalidate_all()
        fresh = await b.get(path)
        assert fresh.json()["outcome"]["action"] == "restart_pod"
        assert fresh.headers["x-cache"] in ("l1", "l3")


async def test_redis_down_at_start_then_l1_comes_back(
    redis_context: LocalStack, context_db: str, prefix: str
) -> None:
    stack = redis_context
    stack.stop_component("redis-context", sig=signal.SIGKILL)
    settings = _settings(stack, context_db, prefix)
    async with open_replica(settings) as a, open_replica(settings) as b:
        assert (await a.get("/readyz")).status_code == 200
        await _wait_state(a, breaker=2, available=0)
        assert (await a.get("/healthz")).json() == {
            "status": "ok",
            "l1": "unavailable",
            "breaker": "open",
            "notifications": "listening",
        }
        first = await a.get("/api/v1/incidents/11")
        assert (first.status_code, first.headers["x-cache"]) == (200, "l3")
        assert (await a.get("/api/v1/incidents/11")).headers["x-cache"] == "l2"

        stack.start_redis_context()
        await _wait_state(a, breaker=0, available=1)
        await _wait_state(b, breaker=0, available=1)
        await _l1_serves(a, b, "/api/v1/incidents/12")


async def test_redis_back_but_owned_by_the_gateway_is_not_used(
    redis_context: LocalStack, context_db: str, prefix: str
) -> None:
    stack = redis_context
    settings = _settings(stack, context_db, prefix, breaker={"failure_threshold": 3, "reset_timeout_s": 15})
    redis = Redis(**stack.redis_auth(stack.topology.redis_context_port))
    try:
        async with open_replica(settings) as a:
            assert await _state(a) == (0, 1)
            stack.stop_component("redis-context", sig=signal.SIGKILL)
            assert (await a.get("/api/v1/incidents/21")).status_code == 200
            await _wait_state(a, breaker=2, available=0)
            # The next probe is reset_timeout_s away: the fresh server is the gateway's before it comes.
            stack.start_redis_context()
            await redis.set(OWNER_KEY, "gateway")
            assert await _state(a) == (2, 0)

            async def probed() -> bool:
                clients = await redis.client_list()
                return any(c.get("name") == "kubernaut-context-api" for c in clients)

            await eventually(probed, within=60, what="the Context-API to probe the new server")
            await _wait_state(a, breaker=2, available=0)
            r = await a.get("/api/v1/incidents", namespace="identity", limit=3)
            assert (r.status_code, r.headers["x-cache"]) == (200, "l3")
            await a.api.cache.idle()
            assert await redis.get(OWNER_KEY) == b"gateway"
            assert [k async for k in redis.scan_iter(match=f"{prefix}*")] == []

            await redis.delete(OWNER_KEY)  # the operator gives the server back
            await _wait_state(a, breaker=0, available=1, within=15)
            assert await redis.get(OWNER_KEY) == b"context-api"
    finally:
        await redis.aclose()
