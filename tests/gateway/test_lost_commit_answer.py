"""A webhook's commit in flight when the PostgreSQL primary dies (issue 14): the commit reached the
synchronous standby but its answer never reached the gateway. The gateway must resolve the outcome and
acknowledge it, not refuse it (a refused webhook is retried and counted twice)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg
import httpx
import pytest

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack import postgres as pg
from tests.fixtures.ha import until_settled
from tests.localstack.test_postgres_ha import _webhook

pytestmark = pytest.mark.ha

CLIENT_TIMEOUT_S = 30.0


def _node_dsn(stack: LocalStack, port: int) -> str:
    return pg.dsn(stack.topology.host, port, stack.postgres_password)


async def _set_sync_names(dsn: str, value: str | None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if value is None:
            await conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        else:
            await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def _count(dsn: str, namespace: str) -> tuple[int, int]:
    """(requests, occurrences) of ``namespace``."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(occurrence_count), 0) AS c FROM remediation_requests"
            " WHERE namespace = $1",
            namespace,
        )
        assert row is not None
        return int(row["n"]), int(row["c"])
    finally:
        await conn.close()


async def test_a_commit_on_the_standby_whose_answer_died_with_the_primary_is_acknowledged(
    ha_stack: LocalStack,
) -> None:
    primary = ha_stack.pg_ha.primary()
    assert primary is not None
    standby = next(n for n in ha_stack.pg_ha.nodes() if n.name != primary.name)
    namespace = f"lost-{uuid.uuid4().hex[:8]}"
    gateway = ha_stack.url("gateway") + "/api/v1/signals/prometheus"
    headers = {"authorization": f"Bearer {ha_stack.gateway_token}"}
    # Commits on the primary now wait for a standby that does not exist, while the real standby still
    # streams and replays them: a commit is then on the standby and unanswered, as at a primary's death.
    await _set_sync_names(_node_dsn(ha_stack, primary.pg_port), "no_such_standby")
    try:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, headers=headers) as client:
            sent = asyncio.create_task(client.post(gateway, json=_webhook(namespace)))
            deadline = time.monotonic() + 10.0
            while (await _count(_node_dsn(ha_stack, standby.pg_port), namespace))[0] == 0:
                assert time.monotonic() < deadline, "the commit never reached the standby"
                assert not sent.done(), (await sent).text
                await asyncio.sleep(0.01)
            assert not sent.done(), "the commit was answered before the primary died"
            ha_stack.pg_ha.kill_node(primary.name)
            answer = await sent
        assert answer.status_code == 201, answer.text
        assert [s["outcome"] for s in answer.json()["signals"]] == ["created"]
    finally:
        # The killed node keeps the setting on disk and may come back as the primary (Patroni's leader key
        # outlives a quick restart): undo it on every node that answers while the stack heals.
        heal = asyncio.create_task(asyncio.to_thread(ha_stack.up, timeout=120))
        while True:
            for node in ha_stack.pg_ha.nodes():
                with contextlib.suppress(OSError, asyncpg.PostgresError):
                    await _set_sync_names(_node_dsn(ha_stack, node.pg_port), None)
            if heal.done():
                break
            await asyncio.wait([heal], timeout=0.5)
        await heal
        # Healed means as the other HA tests find it: a primary and a synchronous standby again.
        await until_settled(ha_stack)
    # Exact: one request counted once; the same alert again is one more occurrence, not a new request.
    assert await _count(ha_stack.postgres_dsn, namespace) == (1, 1)
    ha_stack.wait_service_ready("gateway", timeout=30)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, headers=headers) as client:
        again = await client.post(gateway, json=_webhook(namespace))
    assert again.status_code == 202, again.text
    deadline = time.monotonic() + 30.0
    while (counted := await _count(ha_stack.postgres_dsn, namespace)) != (1, 2):
        assert counted[0] == 1
        assert time.monotonic() < deadline, counted
        await asyncio.sleep(0.1)
