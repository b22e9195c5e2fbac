"""The tiers: a repeat is served from L2, another replica gets L1, an outcome reaches every tier of every
replica, concurrent misses share one L3 query, and the L1 value cap and L2 TTL hold."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from kubernaut.config import Settings
from kubernaut_tools.localstack import LocalStack
from tests.contextapi.replicas import Replica, eventually, make_settings, open_replica

Replicas = tuple[Replica, Replica]

CACHED = [
    ("/api/v1/incidents", {"namespace": "payments", "limit": 100}),
    ("/api/v1/incidents/1", {}),
    ("/api/v1/aggregations/success-rate", {"severity": "critical"}),
    ("/api/v1/aggregations/namespaces", {}),
    ("/api/v1/aggregations/severity", {}),
    ("/api/v1/aggregations/trend", {"days": 30}),
]


@pytest.mark.parametrize(("path", "params"), CACHED)
async def test_repeat_is_l2_and_the_other_replica_gets_l1(
    replicas: Replicas, path: str, params: dict[str, Any]
) -> None:
    a, b = replicas
    first = await a.get(path, **params)
    assert (first.status_code, first.headers["x-cache"]) == (200, "l3")
    again = await a.get(path, **params)
    assert (again.headers["x-cache"], again.content) == ("l2", first.content)
    await a.api.cache.idle()  # the L1 fill runs after the answer
    other = await b.get(path, **params)
    assert (other.headers["x-cache"], other.content) == ("l1", first.content)
    assert (await b.get(path, **params)).headers["x-cache"] == "l2"  # the L1 hit filled b's L2
    l3_a = sum([await a.metric("context_api_l3_queries_total", query=q) for q in _QUERIES])
    l3_b = sum([await b.metric("context_api_l3_queries_total", query=q) for q in _QUERIES])
    assert (l3_a, l3_b) == (1, 0)
    assert await a.metric("context_api_cache_hits_total", tier="l2") == 1
    assert await a.metric("context_api_cache_misses_total", tier="l1") == 1
    assert await b.metric("context_api_cache_hits_total", tier="l1") == 1


_QUERIES = ("incidents_list", "incident", "success_rate", "namespaces", "severity", "trend")


async def test_outcome_reaches_every_tier_on_both_replicas(
    replicas: Replicas, db: asyncpg.Connection
) -> None:
    a, b = replicas
    incident = await db.fetchrow(
        """SELECT r.id, r.namespace, (r.first_seen AT TIME ZONE 'UTC')::date AS day
           FROM remediation_requests r LEFT JOIN remediation_outcomes o ON o.request_id = r.id
           WHERE o.request_id IS NULL AND r.first_seen > now() - interval '80 days' ORDER BY r.id LIMIT 1"""
    )
    assert incident is not None
    iid, ns = incident["id"], incident["namespace"]
    views: list[tuple[str, dict[str, Any]]] = [
        (f"/api/v1/incidents/{iid}", {}),
        ("/api/v1/incidents", {"namespace": ns, "limit": 1000}),
        ("/api/v1/incidents", {"limit": 1000, "phase": "completed"}),
        ("/api/v1/aggregations/success-rate", {"namespace": ns}),
        ("/api/v1/aggregations/success-rate", {}),
        ("/api/v1/aggregations/namespaces", {}),
        ("/api/v1/aggregations/trend", {"days": 90}),
    ]
    before = []
    for path, params in views:  # cached in every tier of both replicas
        before.append((await a.get(path, **params)).json())
        await a.api.cache.idle()
        assert (await b.get(path, **params)).headers["x-cache"] == "l1"
        assert (await b.get(path, **params)).headers["x-cache"] == "l2"
        assert (await a.get(path, **params)).headers["x-cache"] == "l2"

    told = await b.metric("context_api_invalidations_total", origin="postgres")
    r = await a.client.post(
        f"/api/v1/incidents/{iid}/outcome", json={"action": "scale_deployment", "succeeded": True}
    )
    assert r.status_code == 200
    assert await a.metric("context_api_invalidations_total", origin="local") == 1

    async def b_was_told() -> bool:
        return await b.metric("context_api_invalidations_total", origin="postgres") > told

    await eventually(b_was_told, within=20, what="replica b to receive the invalidation")

    for replica in (a, b):
        after = [(await replica.get(path, **params)).json() for path, params in views]
        by_id, in_ns, completed, rate_ns, rate_all, namespaces, trend = after
        assert by_id["phase"] == "completed"
        assert by_id["outcome"]["action"] == "scale_deployment"
        assert next(i for i in in_ns["incidents"] if i["id"] == iid)["outcome"] is not None
        assert completed["total"] == before[2]["total"] + 1
        assert rate_ns["succeeded"] == before[3]["succeeded"] + 1
        assert rate_all["total"] == before[4]["total"] + 1
        row = next(x for x in namespaces["namespaces"] if x["namespace"] == ns)
        old = next(x for x in before[5]["namespaces"] if x["namespace"] == ns)
        assert row["succeeded"] == old["succeeded"] + 1
        day = incident["day"].isoformat()
        new_point = next(p for p in trend["points"] if p["date"] == day)
        old_point = next(p for p in before[6]["points"] if p["date"] == day)
        assert new_point["succeeded"] == old_point["succeeded"] + 1


async def test_hundred_concurrent_cold_requests_make_one_l3_query(settings: Settings) -> None:
    async with open_replica(settings) as a:
        before = await a.metric("context_api_l3_queries_total", query="incidents_list")
        answers = await asyncio.gather(
            *(a.get("/api/v1/incidents", namespace="identity", limit=500) for _ in range(100))
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        after = await a.metric("context_api_l3_queries_total", query="incidents_list")
        assert after - before == 1
        collapsed = await a.metric("context_api_singleflight_collapsed_total")
        l2_hits = await a.metric("context_api_cache_hits_total", tier="l2")
        print(
            f"\n100 concurrent cold requests: {after - before:.0f} L3 query,"
            f" {collapsed:.0f} collapsed, {l2_hits:.0f} from L2"
        )
        assert collapsed + l2_hits == 99
        assert collapsed > 0


async def test_l1_value_cap_and_ttl(stack: LocalStack, context_db: str, prefix: str) -> None:
    settings = make_settings(stack, context_db, prefix, l1={"max_value_bytes": 20_000, "ttl_s": 120})
    async with open_replica(settings) as a, open_replica(settings) as b:
        big = await a.get("/api/v1/incidents", limit=500)
        small = await a.get("/api/v1/incidents/2")
        assert len(big.content) > 20_000 > len(small.content)
        await a.api.cache.idle()
        assert (await b.get("/api/v1/incidents", limit=500)).headers["x-cache"] == "l3"  # too big for L1
        assert (await b.get("/api/v1/incidents/2")).headers["x-cache"] == "l1"
        redis = Redis(**stack.redis_auth(stack.topology.redis_context_port))
        try:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}c:*")]
            assert keys
            ttls = [await redis.ttl(k) for k in keys]
            assert all(0 < t <= 120 for t in ttls)
        finally:
            await redis.aclose()


async def test_l2_ttl_bounds_an_entry(stack: LocalStack, context_db: str, prefix: str) -> None:
    settings = make_settings(stack, context_db, prefix, l2={"ttl_s": 0.3})
    async with open_replica(settings) as a:
        assert (await a.get("/api/v1/incidents/3")).headers["x-cache"] == "l3"
        await a.api.cache.idle()

        async def from_l1() -> bool:
            return (await a.get("/api/v1/incidents/3")).headers["x-cache"] == "l1"

        await eventually(from_l1, within=20, what="the L2 entry to expire")
