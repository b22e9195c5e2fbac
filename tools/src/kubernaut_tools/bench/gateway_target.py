"""The gateway as an ingest target: the real ``kubernaut gateway`` process of the benchmark's stack, each
row on fresh state (its Redis group flushed, the requests table emptied), rate limiting in shadow mode so
one load source is measured, not refused, while the limiter still does its work."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import asyncpg
import redis
import yaml

from kubernaut.store.migrate import migrate_dsn
from kubernaut.store.schema import REQUESTS
from kubernaut_tools.bench.alerts import webhook_v4
from kubernaut_tools.bench.ingest import IngestTarget
from kubernaut_tools.bench.ingest_check import check
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.alerting import WEBHOOK_PATH


@dataclass(frozen=True)
class Scale:
    """How the gateway runs: worker processes per instance, instances on the port (SO_REUSEPORT)."""

    workers: int | None = None  # None: the configuration's default (one per usable core)
    instances: int = 1

    def describe(self) -> str:
        workers = "default workers" if self.workers is None else f"{self.workers} worker(s)"
        return f"{self.instances} instance(s) x {workers}"


def configure(stack: LocalStack, scale: Scale = Scale()) -> None:
    """Shadow rate limiting (and ``scale``) in the stack's configuration (rewritten by every ``up``: call
    after it)."""
    config = yaml.safe_load(stack.run.config_file.read_text())
    config["gateway"]["rate_limit"] = {"mode": "shadow"}
    if scale.workers is not None:
        config["gateway"]["http"]["workers"] = scale.workers
    if scale.instances > 1:
        config["gateway"]["http"]["reuse_port"] = True
    stack.run.config_file.write_text(yaml.safe_dump(config, sort_keys=False))


async def _empty_requests(dsn: str) -> None:
    await migrate_dsn(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {REQUESTS} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@contextmanager
def _extra_instance(stack: LocalStack, index: int) -> Iterator[None]:
    """Another ``kubernaut gateway`` on the stack's port (its configuration sets reuse_port), own instance
    id, same Redis group and PostgreSQL; up once its log says its start-up completed."""
    name = f"gateway-{index}"
    log = stack.run.log(name)
    log.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]

    def started() -> bool:
        return "Application startup complete" in log.read_text(errors="replace")

    try:
        stack.launcher.launch(
            name,
            argv,
            marker="-m kubernaut gateway",
            ready=started,
            timeout=60,
            what=f"{name} to start",
            env=dict(os.environ),
        )
        yield
    finally:
        stack.launcher.retire(name)


@contextmanager
def gateway(stack: LocalStack, scale: Scale = Scale()) -> Iterator[IngestTarget]:
    addr = stack.master_node().addr
    with redis.Redis(*addr, password=stack.redis_password(addr[1])) as r:
        r.flushall()  # the gateway claims the group again when it starts
    dsn = stack.postgres_dsn
    asyncio.run(_empty_requests(dsn))
    stack.start_service("gateway", timeout=60)
    try:
        with ExitStack() as extra:
            for index in range(2, scale.instances + 1):
                extra.enter_context(_extra_instance(stack, index))
            yield IngestTarget(
                "gateway",
                stack.url("gateway") + WEBHOOK_PATH,
                webhook_v4,
                headers=(f"Authorization: Bearer {stack.gateway_token}",),
                redis=addr,
                redis_password=stack.redis_password(addr[1]),
                verify=lambda acknowledged, in_flight: asyncio.run(
                    check(dsn, acknowledged, in_flight)
                ).describe(),
            )
    finally:
        stack.stop_component("gateway")
