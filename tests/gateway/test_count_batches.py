"""Duplicate-count batches on the real stack (gateway in-process): each batch id is applied once in
PostgreSQL, a copy of a flushed batch brought back by a failover takes no new counts, and a gateway on a
standalone Redis (no replica to wait for) still counts."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from kubernaut.config import AlertTimeSettings, StandaloneRedis
from kubernaut.gateway.ingest_protocol import CountBatch
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.store import RequestStore
from kubernaut.redis.keys import OWNER_KEY, SHARERS_KEY
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    in_process,
    isolated,
    unique,
    wait_bound,
    webhook,
)

pytestmark = pytest.mark.stack


async def _count(stack: LocalStack, name: str) -> int:
    rows = await fetch_rows(
        stack, "SELECT occurrence_count FROM remediation_requests WHERE signal_name = $1", name
    )
    return int(rows[0]["occurrence_count"])


async def test_a_batch_id_is_applied_once(stack: LocalStack) -> None:
    name = unique("Batch")
    async with in_process(isolated(stack, rate_limit={"mode": "off"}), stack.gateway_token) as gw:
        created = await gw.post(PROMETHEUS, json=webhook(alert(name)))
    request_id = created.json()["signals"][0]["request_id"]
    store = RequestStore(stack.settings().postgres, GatewayMetrics(), max_affected=10)
    await store.start()
    try:
        batch = uuid.uuid4().hex

        async def apply(counts: dict[int, int], batch_id: str) -> bool:
            return await store.apply_batch(
                CountBatch(counts, [], {}), datetime.now(UTC), batch_id, "unused:", AlertTimeSettings()
            )

        assert await apply({request_id: 5}, batch)
        assert not await apply({request_id: 5}, batch)
        assert await apply({request_id: 2}, uuid.uuid4().hex)
    finally:
        await store.close()
    assert await _count(stack, name) == 1 + 5 + 2


async def test_a_flushed_batch_brought_back_by_a_failover_takes_no_new_count(stack: LocalStack) -> None:
    """The count hash a take moved aside (and PostgreSQL applied under its id) comes back whole when
    Sentinel promotes a replica that had not received that take. Counting on into it would add the new
    counts under an id PostgreSQL has applied: lost. Here the promoted replica's state is made exactly
    (the hash as it was before the take, restored after the flush); a failover takes longer than the
    hash's age limit, which the test waits out on the master's clock. Each gateway run below flushes at
    its shutdown (the flush interval is too long to flush before)."""
    name = unique("Resurrected")
    settings = isolated(stack, rate_limit={"mode": "off"}, count_flush_interval_s=3600)
    key = f"{settings.gateway.key_prefix}counts"
    master = stack.current_master()
    assert master is not None
    redis = Redis(**stack.redis_auth(master[1]))
    try:
        async with in_process(settings, stack.gateway_token) as gw:
            created = (await gw.post(PROMETHEUS, json=webhook(alert(name)))).json()["signals"][0]
            await wait_bound(stack, created["fingerprint"], settings.gateway.key_prefix)
            for _ in range(3):
                assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 202
            before_take = await redis.dump(key)
            assert before_take is not None
        assert await _count(stack, name) == 1 + 3
        await redis.restore(key, 0, before_take, replace=True)  # what the promoted replica holds
        born = int(await redis.hget(key, "_born") or 0)
        deadline = time.monotonic() + 10
        while (await redis.time())[0] * 1000 < born + 2_100:  # scripts/counts_hash.lua: COUNTS_MAX_AGE_MS
            assert time.monotonic() < deadline, "the master's clock stands still"
            await asyncio.sleep(0.05)
        async with in_process(settings, stack.gateway_token) as gw:
            for _ in range(4):
                assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 202
    finally:
        await redis.aclose()
    assert await _count(stack, name) == 1 + 3 + 4


async def test_a_standalone_redis_has_no_replica_to_wait_for(stack: LocalStack) -> None:
    name = unique("Standalone")
    t = stack.topology
    redis = StandaloneRedis(  # a single Redis, no replicas
        host=t.host, port=t.redis_context_port, password=stack.redis_context_password
    )
    settings = isolated(stack, redis=redis, allow_shared_redis=True, rate_limit={"mode": "off"})
    # Borrowed from the Context-API: give its ownership marks back, or its next start refuses the Redis.
    client = Redis(**stack.redis_auth(t.redis_context_port))
    marks = {key: await client.dump(key) for key in (OWNER_KEY, SHARERS_KEY)}
    try:
        async with in_process(settings, stack.gateway_token) as gw:
            first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
            again = await gw.post(PROMETHEUS, json=webhook(alert(name)))
    finally:
        for key, value in marks.items():
            await client.delete(key)
            if value is not None:
                await client.restore(key, 0, value)
        await client.aclose()
    assert (first.status_code, again.status_code) == (201, 202), again.text
