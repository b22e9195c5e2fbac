"""The gateway as an ingest target: the real ``kubernaut gateway`` process of the benchmark's stack, each
row on fresh state (its Redis group flushed, the requests table emptied), rate limiting in shadow mode so
one load source is measured, not refused, while the limiter still does its work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import redis
import yaml

from kubernaut.bench.alerts import webhook_v4
from kubernaut.bench.ingest import IngestTarget
from kubernaut.localstack import LocalStack
from kubernaut.localstack.alerting import WEBHOOK_PATH
from kubernaut.store.migrate import migrate_dsn


def configure(stack: LocalStack) -> None:
    """Shadow rate limiting in the stack's configuration (rewritten by every ``up``: call after it)."""
    config = yaml.safe_load(stack.run.config_file.read_text())
    config["gateway"]["rate_limit"] = {"mode": "shadow"}
    stack.run.config_file.write_text(yaml.safe_dump(config, sort_keys=False))


async def _empty_requests(dsn: str) -> None:
    await migrate_dsn(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE remediation_requests RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def master(stack: LocalStack) -> tuple[str, int]:
    found = stack.current_master()
    if found is None:
        raise RuntimeError("the gateway's Redis group has no master")
    return found


@contextmanager
def gateway(stack: LocalStack) -> Iterator[IngestTarget]:
    addr = master(stack)
    with redis.Redis(*addr, password=stack.redis_password(addr[1])) as r:
        r.flushall()  # the gateway claims the group again when it starts
    asyncio.run(_empty_requests(stack.postgres_dsn))
    stack.start_service("gateway", timeout=60)
    try:
        yield IngestTarget(
            "gateway",
            stack.url("gateway") + WEBHOOK_PATH,
            webhook_v4,
            headers=(f"Authorization: Bearer {stack.gateway_token}",),
            redis=addr,
            redis_password=stack.redis_password(addr[1]),
        )
    finally:
        stack.stop_component("gateway")
