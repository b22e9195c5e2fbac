"""A group commit whose answer was lost, on the server that ran it (gateway/commit_outcome.py): the
verdict is COMMITTED once the commit is visible, NOT_COMMITTED once the transaction ended without it, and
UNKNOWN while it may still commit. Real PostgreSQL, transactions opened the way the gateway opens them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from kubernaut.gateway.commit_outcome import CommitMark, Verdict, resolve
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import connect_db

pytestmark = pytest.mark.stack

BUDGET_S = 10.0  # a decided verdict comes at once; only UNKNOWN waits for the budget


@pytest.fixture
async def pool(stack: LocalStack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.postgres_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _open(conn: asyncpg.Connection) -> CommitMark:
    """A transaction holding a fresh mark, as the gateway's group commit opens it."""
    mark = CommitMark.new()
    await conn.execute(mark.begin())
    return mark


async def _verdict(stack: LocalStack, pool: asyncpg.Pool, mark: CommitMark, budget_s: float) -> Verdict:
    return await resolve(pool, stack.postgres_dsn, mark, budget_s)


async def test_a_running_transaction_is_unknown_then_committed(stack: LocalStack, pool: asyncpg.Pool) -> None:
    conn = await connect_db(stack)
    try:
        mark = await _open(conn)
        assert await _verdict(stack, pool, mark, 0.5) is Verdict.UNKNOWN
        await conn.execute("COMMIT")
        assert await _verdict(stack, pool, mark, BUDGET_S) is Verdict.COMMITTED
    finally:
        await conn.close()


async def test_a_rolled_back_transaction_is_not_committed(stack: LocalStack, pool: asyncpg.Pool) -> None:
    conn = await connect_db(stack)
    try:
        mark = await _open(conn)
        await conn.execute("ROLLBACK")
        assert await _verdict(stack, pool, mark, BUDGET_S) is Verdict.NOT_COMMITTED
    finally:
        await conn.close()


async def test_a_transaction_whose_connection_died_is_not_committed(
    stack: LocalStack, pool: asyncpg.Pool
) -> None:
    """The client is gone before COMMIT: the server ends the transaction when it notices; until then the
    verdict may be UNKNOWN, never NOT_COMMITTED while the lock is held."""
    conn = await connect_db(stack)
    mark = await _open(conn)
    conn.terminate()  # the socket closed under the open transaction, no ROLLBACK sent
    assert await _verdict(stack, pool, mark, BUDGET_S) is Verdict.NOT_COMMITTED


async def test_the_verdict_waits_for_the_transaction_to_end(stack: LocalStack, pool: asyncpg.Pool) -> None:
    """Asked while the transaction runs, the answer comes once it commits: not before, and not 'not
    committed' on the way."""
    conn = await connect_db(stack)
    try:
        mark = await _open(conn)
        asking = asyncio.create_task(_verdict(stack, pool, mark, BUDGET_S))
        done, _ = await asyncio.wait([asking], timeout=0.5)
        assert not done, asking.result()
        await conn.execute("COMMIT")
        assert await asking is Verdict.COMMITTED
    finally:
        await conn.close()
