"""Context-API replicas on the real stack: the stack's PostgreSQL (a database of their own, seeded) and the
stack's Context-API Redis. A replica is one app instance served in-process (its own L2, metrics registry,
Redis client and PostgreSQL pool); two replicas with one key prefix share L1 as two pods would."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from kubernaut.config import Settings
from kubernaut.store.migrate import migrate
from kubernaut_tools.localstack import LocalStack, postgres
from kubernaut_tools.localstack import redis_servers as rs
from kubernaut_tools.seed import seed_history
from tests.contextapi.replicas import SEEDED, TEST_DB, Replica, make_settings, open_replica


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
