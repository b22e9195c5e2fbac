"""HA PostgreSQL on the real stack: Patroni + etcd, a synchronous standby, services following the primary,
the Context-API reading from the standby without serving a change it has not replayed, and the drills."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg
import httpx
import pytest

from kubernaut_tools.drill.faults import SCENARIOS
from kubernaut_tools.drill.runner import run_drill
from kubernaut_tools.localstack import LocalStack, patroni
from kubernaut_tools.localstack import postgres as pg
from tests.fixtures.ha import until_settled, wait_settled

pytestmark = pytest.mark.ha

HA_SCENARIOS = [name for name, s in SCENARIOS.items() if s.postgres == "ha"]
# Generous bounds on properties (as the Redis drills'): the gateway's blackout may open before the fault
# (a request sent just before it) and close after the promotion (a stale pooled connection fails once).
FAILOVER_BOUND_S = 30.0
BLACKOUT_MARGIN_S = 5.0


def _node_dsn(stack: LocalStack, addr: str) -> str:
    host, _, port = addr.rpartition(":")
    return pg.dsn(host, int(port), stack.postgres_password)


def test_status_names_one_primary_and_a_synchronous_standby(ha_stack: LocalStack) -> None:
    wait_settled(ha_stack)
    status = ha_stack.status().postgres
    members = status.members
    assert status.mode == "ha"
    assert [m.role for m in members].count("primary") == 1
    primary = next(m for m in members if m.role == "primary")
    assert status.primary == primary.addr
    assert any(m.role == "standby" and m.sync for m in members)
    for m in members:
        assert set(m.json()) >= {"name", "addr", "pid", "role", "sync"}
        assert m.pid is not None
    dsn = status.dsns.dsn or ""
    assert "target_session_attrs=read-write" in dsn
    assert all(m.addr in dsn for m in members)


async def test_a_commit_waits_for_the_synchronous_standby(ha_stack: LocalStack) -> None:
    await until_settled(ha_stack)
    primary = ha_stack.status().postgres.primary
    assert primary is not None
    conn = await asyncpg.connect(_node_dsn(ha_stack, primary))
    try:
        names = await conn.fetchval("SHOW synchronous_standby_names")
        commit = await conn.fetchval("SHOW synchronous_commit")
        sync = await conn.fetch("SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'")
    finally:
        await conn.close()
    standby = next(m for m in ha_stack.status().postgres.members if m.sync)
    assert commit == "on"
    assert standby.name in names
    assert [r["application_name"] for r in sync] == [standby.name]


def _webhook(namespace: str) -> dict[str, object]:
    alert = {
        "status": "firing",
        "labels": {"alertname": "FenceProbe", "namespace": namespace, "pod": "p-0", "severity": "warning"},
        "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": "",
    }
    return {
        "version": "4",
        "receiver": "kubernaut",
        "status": "firing",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local",
        "truncatedAlerts": 0,
        "alerts": [alert],
    }


async def test_context_api_does_not_refill_from_a_standby_behind_the_change(ha_stack: LocalStack) -> None:
    """Replay paused on the standby: the change reaches the standby's disk (synchronous commit) but not
    its tables. The invalidation that follows must not be refilled from there.

    A Patroni leader that loses its lease on a loaded machine restarts its PostgreSQL, and the standby
    that follows the new timeline no longer holds the pause: then the fault was not in place, and the
    case is set up again (at most three times), as a fault injection that missed its window."""
    for _attempt in range(3):
        await until_settled(ha_stack)
        if await _refill_case(ha_stack):
            return
    raise AssertionError("the standby's replay pause never held through the case (cluster unsettled)")


async def _replay_paused(conn: asyncpg.Connection) -> bool:
    try:
        return bool(await conn.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused")
    except asyncpg.PostgresError:  # promoted meanwhile: no recovery to pause
        return False


async def _refill_case(ha_stack: LocalStack) -> bool:
    """One run of the case above; False when the standby left its pause (the fault was not in place)."""
    namespace = f"fence-{uuid.uuid4().hex[:8]}"
    url = ha_stack.url("context-api") + f"/api/v1/incidents?namespace={namespace}"
    standby = next(m for m in ha_stack.status().postgres.members if m.role == "standby")
    conn = await asyncpg.connect(_node_dsn(ha_stack, standby.addr))
    # the Context-API's read token by default; the gateway's request carries its own
    reader = {"authorization": f"Bearer {ha_stack.context_api_read_token}"}
    async with httpx.AsyncClient(timeout=10.0, headers=reader) as client:
        first = await client.get(url)
        assert first.status_code == 200
        assert first.json()["total"] == 0
        await conn.execute("SELECT pg_wal_replay_pause()")
        try:
            # The pause takes effect at the next WAL record replayed ("pause requested" until then): give it
            # one (a non-transactional message written on the primary).
            primary = await asyncpg.connect(ha_stack.postgres_dsn)
            try:
                deadline = time.monotonic() + 10.0
                while await conn.fetchval("SELECT pg_get_wal_replay_pause_state()") != "paused":
                    assert time.monotonic() < deadline, "the standby did not pause its replay"
                    await primary.execute("SELECT pg_logical_emit_message(false, 'fence-test', 'x')")
                    await asyncio.sleep(0.01)
            finally:
                await primary.close()
            sent = await client.post(
                ha_stack.url("gateway") + "/api/v1/signals/prometheus",
                json=_webhook(namespace),
                headers={"authorization": f"Bearer {ha_stack.gateway_token}"},
            )
            assert sent.status_code == 201, sent.text
            # The standby holds the change but has not replayed it.
            replayed = await conn.fetchval(
                "SELECT count(*) FROM remediation_requests WHERE namespace = $1", namespace
            )
            if replayed and not await _replay_paused(conn):
                return False
            assert replayed == 0
            deadline = time.monotonic() + 10.0
            total = 0
            while time.monotonic() < deadline:
                answer = await client.get(url)
                assert answer.status_code == 200
                total = answer.json()["total"]
                if total == 1:
                    break
            assert total == 1, "an answer refilled from the lagging standby hid the new request"
            # ...and the cached answer is the fresh one, not a stale one cached meanwhile.
            assert (await client.get(url)).json()["total"] == 1
            return True
        finally:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.execute("SELECT pg_wal_replay_resume()")
            await conn.close()


async def test_context_api_stays_ready_while_the_primary_is_gone(ha_stack: LocalStack) -> None:
    """Its reads go to the standby, so a primary failover must not take it out of a Service."""
    primary = ha_stack.pg_ha.primary()
    assert primary is not None
    url = ha_stack.url("context-api") + "/readyz"
    async with httpx.AsyncClient(timeout=5.0) as client:
        ha_stack.pg_ha.kill_node(primary.name)
        try:
            assert not any(
                patroni.is_primary(ha_stack.topology.host, n.rest_port) for n in ha_stack.pg_ha.nodes()
            ), "no node takes writes now"
            answers = [(await client.get(url)).status_code for _ in range(5)]
            assert answers == [200] * 5
        finally:
            await asyncio.to_thread(ha_stack.up, timeout=120)


@pytest.mark.parametrize("scenario", HA_SCENARIOS)
async def test_postgres_drill_keeps_the_invariants(ha_stack: LocalStack, scenario: str) -> None:
    report = await run_drill(ha_stack, scenario)

    assert report.accepted > 0
    assert report.lost == 0, "an acknowledged alert has no RemediationRequest"
    assert report.duplicate_open_requests == 0
    assert report.other_errors == 0, "every refusal must be 503/429 with Retry-After"
    assert report.context_api_errors == 0, "the Context-API must answer throughout"
    # A commit whose answer died with the primary is resolved, not refused and counted again on retry.
    assert report.count_drift == 0
    assert all(report.checks.values()), report.checks
    if scenario == "postgres-standby-kill":
        assert report.postgres_failover_s is None
    else:
        assert report.postgres_failover_s is not None
        assert report.postgres_failover_s < FAILOVER_BOUND_S
        assert report.gateway_blackout_s <= report.postgres_failover_s + BLACKOUT_MARGIN_S
    assert ha_stack.pg_ha.ready()
    ha_stack.wait_service_ready("gateway", timeout=30)
    ha_stack.wait_service_ready("context-api", timeout=30)


async def _listener_since(stack: LocalStack, node: patroni.Node, since: float) -> str | None:
    """The last statement of a Context-API LISTEN connection opened on ``node`` after ``since`` (epoch
    seconds); None when there is none (or the node does not answer)."""
    try:
        conn = await asyncpg.connect(pg.dsn(stack.topology.host, node.pg_port, stack.postgres_password))
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        query: str | None = await conn.fetchval(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'kubernaut-context-api-listener'"
            " AND backend_start > to_timestamp($1)",
            since,
        )
        return query
    finally:
        await conn.close()


async def test_context_api_listens_on_the_new_primary_after_a_failover(ha_stack: LocalStack) -> None:
    """PostgreSQL NOTIFY is the Context-API's only invalidation channel: after the primary dies its
    listener must LISTEN again on whichever node is primary next, and a request created there reach a
    cached answer in moments (the L2 TTL is 30 s, L1's 300 s)."""
    namespace = f"listen-{uuid.uuid4().hex[:8]}"
    url = ha_stack.url("context-api") + f"/api/v1/incidents?namespace={namespace}"
    reader = {"authorization": f"Bearer {ha_stack.context_api_read_token}"}
    await until_settled(ha_stack)
    old = ha_stack.pg_ha.primary()
    assert old is not None
    killed_at = time.time()
    ha_stack.pg_ha.kill_node(old.name)
    try:
        deadline = time.monotonic() + FAILOVER_BOUND_S + 30.0
        while True:
            new = await asyncio.to_thread(ha_stack.pg_ha.primary)
            # "SELECT 1" is the heartbeat, sent only once LISTEN and the resync after it are done.
            if new is not None and await _listener_since(ha_stack, new, killed_at) == "SELECT 1":
                break
            assert time.monotonic() < deadline, "the Context-API does not listen on the new primary"
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=10.0, headers=reader) as client:
            assert (await client.get(url)).json()["total"] == 0
            assert (await client.get(url)).headers["x-cache"] in ("l1", "l2")  # cached now
            deadline = time.monotonic() + 30.0
            while True:
                sent = await client.post(
                    ha_stack.url("gateway") + "/api/v1/signals/prometheus",
                    json=_webhook(namespace),
                    headers={"authorization": f"Bearer {ha_stack.gateway_token}"},
                )
                if sent.status_code != 503:  # the gateway may still be following the failover
                    break
                assert time.monotonic() < deadline, sent.text
                await asyncio.sleep(0.2)
            assert sent.status_code == 201, sent.text
            deadline = time.monotonic() + 10.0
            while (await client.get(url)).json()["total"] != 1:
                assert time.monotonic() < deadline, "the new request's notification did not arrive"
                await asyncio.sleep(0.02)
    finally:
        await asyncio.to_thread(ha_stack.up, timeout=120)
