"""The cache configurations the read benchmarks rely on, on real replicas: a one-entry L2 aging out in 1 ms
sends every request that alternates keys to L1, and with L1 off as well every request is a query."""

from __future__ import annotations

import asyncpg

from kubernaut_tools.bench.contextapi_target import TINY_L2
from kubernaut_tools.localstack import LocalStack
from tests.contextapi.replicas import make_settings, open_replica


async def _two_ids(db: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await db.fetch("SELECT id FROM remediation_requests ORDER BY id LIMIT 2")]


async def test_tiny_l2_serves_alternating_keys_from_l1(
    stack: LocalStack, context_db: str, prefix: str, db: asyncpg.Connection
) -> None:
    ids = await _two_ids(db)
    async with open_replica(make_settings(stack, context_db, prefix, l2=TINY_L2)) as replica:
        first = [(await replica.get(f"/api/v1/incidents/{i}")).headers["x-cache"] for i in ids]
        await replica.api.cache.idle()  # the L1 fills run in the background
        tiers = [(await replica.get(f"/api/v1/incidents/{i}")).headers["x-cache"] for i in ids * 10]
    assert first == ["l3", "l3"]
    assert tiers == ["l1"] * 20


async def test_l1_off_and_tiny_l2_serve_every_request_from_postgresql(
    stack: LocalStack, context_db: str, prefix: str, db: asyncpg.Connection
) -> None:
    ids = await _two_ids(db)
    settings = make_settings(stack, context_db, prefix, l1={"enabled": False}, l2=TINY_L2)
    async with open_replica(settings) as replica:
        tiers = [(await replica.get(f"/api/v1/incidents/{i}")).headers["x-cache"] for i in ids * 10]
        assert replica.api.cache.l1 is None
    assert tiers == ["l3"] * 20
