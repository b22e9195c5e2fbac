"""Context-API replicas on the real stack: the stack's PostgreSQL (a database of their own, seeded) and the
stack's Context-API Redis. A replica is one app instance served in-process (its own L2, metrics registry,
Redis client and PostgreSQL pool); two replicas with one key prefix share L1 as two pods would."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from kubernaut.config import Settings
from kubernaut.contextapi.app import create_app
from kubernaut.contextapi.auth import load_tokens
from kubernaut.contextapi.runtime import ContextApi
from kubernaut.store.migrate import migrate
from kubernaut_tools.localstack import LocalStack, postgres
from kubernaut_tools.localstack import redis_servers as rs
from kubernaut_tools.seed import seed_history

SEEDED = 3000
TEST_DB = "contextapi_test"


@dataclass
class Replica:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def api(self) -> ContextApi:
        api: ContextApi = self.app.state.api
        return api

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def metric(self, name: str, **labels: str) -> float:
        """A sample read from this replica's /metrics endpoint (0 when absent)."""
        text = (await self.client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0


@pytest.fixture(scope="session")
async def context_db(stack: LocalStack) -> AsyncIterator[str]:
    """A database of its own on the stack's PostgreSQL, migrated and seeded with realistic history."""
    t = stack.topology
    admin_dsn = postgres.dsn(t.host, t.postgres_port, stack.postgres_password, "postgres")

    async def admin(sql: str) -> None:
        # A fresh connection each time: the failure drills restart PostgreSQL mid-session.
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        await admin(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')
        await admin(f'CREATE DATABASE "{TEST_DB}"')
        dsn = postgres.dsn(t.host, t.postgres_port, stack.postgres_password, TEST_DB)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await seed_history(conn, SEEDED, seed=11)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture
async def db(context_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(context_db)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix per test: its replicas share L1 with each other and with no other test."""
    return f"ctxtest-{uuid.uuid4().hex[:8]}:"


def make_settings(stack: LocalStack, dsn: str, prefix: str, **context_api: Any) -> Settings:
    section: dict[str, Any] = {
        "redis": stack.redis_auth(stack.topology.redis_context_port),
        "key_prefix": prefix,
        "breaker": {"failure_threshold": 3, "reset_timeout_s": 0.5},
        "auth": {"tokens_file": str(stack.run.context_api_tokens_file)},
    }
    section.update(context_api)
    return Settings(context_api=section, postgres={"dsn": dsn, "min_pool": 4, "max_pool": 10})


def write_token(settings: Settings) -> str:
    """A write-scope token of the replica's tokens file (the test client reads and records outcomes)."""
    assert settings.context_api.auth.tokens_file is not None
    tokens = load_tokens(settings.context_api.auth.tokens_file)
    return next(t.secret.decode() for t in tokens if t.scope == "write")


@asynccontextmanager
async def open_replica(settings: Settings) -> AsyncIterator[Replica]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = (
            {"authorization": f"Bearer {write_token(settings)}"} if settings.context_api.auth.enabled else {}
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://context-api", headers=headers
        ) as client:
            # Start-up waits a bounded time for the notification listener's first resync, which
            # invalidates everything cached; on a loaded machine it can come later: wait for it here.
            async def listening() -> bool:
                return bool((await client.get("/healthz")).json().get("notifications") == "listening")

            await eventually(listening, within=30, what="the replica's notification listener")
            yield Replica(app, client)


@pytest.fixture
def settings(stack: LocalStack, context_db: str, prefix: str) -> Settings:
    return make_settings(stack, context_db, prefix)


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[Replica, Replica]]:
    async with open_replica(settings) as a, open_replica(settings) as b:
        yield a, b


@pytest.fixture
def redis_context(stack: LocalStack) -> Iterator[LocalStack]:
    """For tests that kill or freeze the Context-API's Redis: it is running and awake again afterwards."""
    try:
        yield stack
    finally:
        stack.signal_component("redis-context", signal.SIGCONT)
        stack.start_redis_context()
        assert rs.ping(stack.topology.host, stack.topology.redis_context_port, stack.redis_context_password)


async def eventually(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Poll an async condition without blocking the event loop the replicas run on."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
