"""Invariants 1-3 with real processes: the Redis master killed by PID, PostgreSQL stopped, while a real
HTTP client keeps sending to a real gateway process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import wait_until
from tests.gateway.helpers import PROMETHEUS, alert, connect_db, gateway_process, master_node, unique, webhook

pytestmark = pytest.mark.stack

SENDERS = 4


@dataclass
class Answer:
    sent: float
    done: float
    status: int
    retry_after: str | None
    fingerprints: list[str] = field(default_factory=list)


@pytest.fixture
def restore_group(stack: LocalStack) -> Iterator[None]:
    """Bring back whatever node a test killed, as a replica, and wait for the group to be whole."""
    yield
    stack.up(services=False, timeout=90)
    wait_until(stack.group_ready, timeout=60, what="the gateway's Redis group to heal")


async def _send_until(
    client: httpx.AsyncClient, name: str, answers: list[Answer], stop: asyncio.Event, sender: int
) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        # One new alert and one repeat of an earlier one per webhook: creates and duplicates both cross
        # the failover.
        body = webhook(alert(name, pod=f"s{sender}-{i}"), alert(name, pod=f"s{sender}-{max(1, i // 2)}"))
        sent = time.monotonic()
        try:
            resp = await client.post(PROMETHEUS, json=body)
        except httpx.TransportError:
            answers.append(Answer(sent, time.monotonic(), 0, None))
            continue
        answer = Answer(sent, time.monotonic(), resp.status_code, resp.headers.get("retry-after"))
        if resp.is_success:
            answer.fingerprints = [s["fingerprint"] for s in resp.json()["signals"]]
        else:
            assert resp.headers["content-type"] == "application/problem+json"
        answers.append(answer)


async def _wait(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_redis_master_killed_while_sending(stack: LocalStack, restore_group: None) -> None:
    name = unique("Failover")
    master, node = master_node(stack)
    port = stack.topology.gateway_http + 100
    answers: list[Answer] = []
    # Storms off: this test is about invariant 2 for single requests (storm windows are Redis state too,
    # see test_storms).
    with gateway_process(
        stack, "gateway-failover", port, RATE_LIMIT__MODE="off", STORM__ENABLED="false"
    ) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
            stop = asyncio.Event()
            senders = [
                asyncio.create_task(_send_until(client, name, answers, stop, s)) for s in range(SENDERS)
            ]
            try:
                await _wait(lambda: sum(a.status in (201, 202) for a in answers) >= 40, 30, "warm-up")
                killed_at = time.monotonic()
                stack.stop_component(node, sig=signal.SIGKILL)
                new_master = await asyncio.to_thread(stack.wait_for_new_master, master, 60)
                promoted_at = time.monotonic()
                await _wait(
                    lambda: sum(a.status in (201, 202) and a.sent > promoted_at for a in answers) >= 40,
                    30,
                    "the gateway to accept again after the promotion",
                )
            finally:
                stop.set()
                await asyncio.gather(*senders)
            metrics = (await client.get("/metrics")).text
        # Let the final flush run (SIGTERM on leaving the block) before counting.

    assert new_master != master
    statuses = {a.status for a in answers}
    assert statuses <= {201, 202, 503}, f"unexpected statuses {statuses}"
    refused = [a for a in answers if a.status == 503]
    assert all(a.retry_after and int(a.retry_after) > 0 for a in refused)

    accepted = {fp for a in answers if a.status in (201, 202) for fp in a.fingerprints}
    db = await connect_db(stack)
    try:
        rows = await db.fetch(
            "SELECT fingerprint, count(*) AS n, sum(occurrence_count) AS occurrences"
            " FROM remediation_requests WHERE signal_name = $1 GROUP BY fingerprint",
            name,
        )
    finally:
        await db.close()
    in_postgres = {r["fingerprint"]: r["n"] for r in rows}
    assert accepted <= set(in_postgres), (
        f"{len(accepted - set(in_postgres))} accepted alerts not in PostgreSQL"
    )
    assert all(n == 1 for n in in_postgres.values()), "a fingerprint got a second request"

    after_kill = [a for a in answers if a.sent >= killed_at]
    first_refused = min((a.sent for a in refused), default=killed_at)
    first_ok_after = min(
        a.done
        for a in after_kill
        if a.status in (201, 202) and a.sent > max((r.sent for r in refused), default=killed_at)
    )
    accepted_count = sum(len(a.fingerprints) for a in answers if a.status in (201, 202))
    stored = sum(int(r["occurrences"]) for r in rows)
    print(  # the figures for the report (pytest -s)
        f"\nfailover: promotion {promoted_at - killed_at:.2f}s after kill; "
        f"503s {len(refused)} of {len(answers)} answers; blackout {first_ok_after - first_refused:.2f}s "
        f"(first 503 to first 2xx after the last 503); first 2xx {first_ok_after - promoted_at:+.2f}s "
        f"after promotion; occurrences accepted {accepted_count}, in PostgreSQL {stored}"
    )
    assert (
        "gateway_redis_master_changes_total 1.0" in metrics
        or "gateway_redis_master_changes_total 2.0" in metrics
    )
    # Generous (the drills' margin): the gateway follows the new master at once, but its writes wait for a
    # replica that Sentinel has re-pointed and that has re-synced, seconds on a loaded machine.
    assert first_ok_after - promoted_at < 5.0, "the gateway did not resume promptly after the promotion"


async def test_postgres_stopped_gives_503_and_recovers(stack: LocalStack) -> None:
    name = unique("PgStop")
    port = stack.topology.gateway_http + 101
    with gateway_process(stack, "gateway-pgstop", port, RATE_LIMIT__MODE="off") as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
            first = await client.post(PROMETHEUS, json=webhook(alert(name, pod="before")))
            assert first.status_code == 201

            stack.stop_component("postgres", sig=signal.SIGINT)
            try:
                during = webhook(alert(name, pod="during-1"), alert(name, pod="during-2"))
                refused = await client.post(PROMETHEUS, json=during)
                assert refused.status_code == 503
                assert int(refused.headers["retry-after"]) > 0
                assert refused.headers["content-type"] == "application/problem+json"
                assert "PostgreSQL" in refused.json()["detail"]
                again = await client.post(PROMETHEUS, json=during)
                assert again.status_code == 503
                assert (await client.get("/readyz")).status_code == 503
            finally:
                await asyncio.to_thread(stack.up, services=False, timeout=90)

            await _wait_ready(client)
            db = await connect_db(stack)
            try:
                pods = await db.fetch(
                    "SELECT resource_name FROM remediation_requests WHERE signal_name = $1", name
                )
                assert [r["resource_name"] for r in pods] == ["before"], "a refused webhook left rows behind"
            finally:
                await db.close()
            retried = await client.post(PROMETHEUS, json=during)
            assert retried.status_code == 201
            assert [s["outcome"] for s in retried.json()["signals"]] == ["created", "created"]


async def _wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 30
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "gateway not ready after PostgreSQL came back"
        await asyncio.sleep(0.1)
