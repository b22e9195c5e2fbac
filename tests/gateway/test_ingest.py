"""Issue 3 on the real stack: dedup, durable requests, resolve, Kubernetes events (gateway in-process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    EVENTS,
    PROMETHEUS,
    alert,
    connect_db,
    event,
    fetch_rows,
    in_process,
    isolated,
    unique,
    wait_bound,
    webhook,
)

pytestmark = pytest.mark.stack

OFF = {"mode": "off"}


async def _requests(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT id, fingerprint, occurrence_count, resolved_at, severity, namespace, resource_kind,"
        " resource_name, environment, priority, signal_type, source, labels::text AS labels"
        " FROM remediation_requests WHERE signal_name = $1 ORDER BY id",
        name,
    )


async def test_two_alerts_and_a_repeat_give_two_requests(stack: LocalStack) -> None:
    name = unique("TwoAndRepeat")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        resp = await gw.post(
            PROMETHEUS, json=webhook(alert(name, pod="a"), alert(name, pod="b"), alert(name, pod="a"))
        )
    assert resp.status_code == 201
    signals = resp.json()["signals"]
    assert [s["outcome"] for s in signals] == ["created", "created", "duplicate"]
    assert signals[0]["request_id"] == signals[2]["request_id"] != signals[1]["request_id"]
    rows = await _requests(stack, name)
    assert len(rows) == 2
    counts = {r["resource_name"]: r["occurrence_count"] for r in rows}
    assert counts == {"a": 2, "b": 1}
    assert {r["source"] for r in rows} == {"local"}
    assert {r["signal_type"] for r in rows} == {"prometheus"}


async def test_repeat_in_a_later_webhook_is_counted_by_the_flush(stack: LocalStack) -> None:
    name = unique("LaterRepeat")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
        assert first.status_code == 201
        rid = first.json()["signals"][0]["request_id"]
        # The bind of fingerprint -> request id is asynchronous; repeats are right either way.
        for _ in range(3):
            again = await gw.post(PROMETHEUS, json=webhook(alert(name)))
            assert again.status_code == 202
            assert again.json()["signals"][0] == {
                "fingerprint": first.json()["signals"][0]["fingerprint"],
                "outcome": "duplicate",
                "request_id": rid,
            }
        await asyncio.wait_for(_until_count(stack, name, 4), timeout=10)
    rows = await _requests(stack, name)
    assert [r["occurrence_count"] for r in rows] == [4]


async def _until_count(stack: LocalStack, name: str, count: int) -> None:
    while True:
        rows = await _requests(stack, name)
        if rows and rows[0]["occurrence_count"] == count:
            return
        await asyncio.sleep(0.1)


async def test_200_concurrent_copies_give_one_request_counted_200(stack: LocalStack) -> None:
    name = unique("Concurrent")
    settings = isolated(stack, rate_limit=OFF)
    async with in_process(settings, stack.gateway_token) as gw:
        replies = await asyncio.gather(*(gw.post(PROMETHEUS, json=webhook(alert(name))) for _ in range(200)))
        statuses = [r.status_code for r in replies]
        assert statuses.count(201) == 1
        assert statuses.count(202) == 199
        ids = {r.json()["signals"][0]["request_id"] for r in replies}
        assert len(ids) == 1
        # Counts from Redis reach PostgreSQL with the next flush (at most every second).
        await asyncio.wait_for(_until_count(stack, name, 200), timeout=10)
    rows = await _requests(stack, name)
    assert len(rows) == 1
    assert rows[0]["occurrence_count"] == 200


async def test_shutdown_flushes_pending_counts(stack: LocalStack) -> None:
    name = unique("ShutdownFlush")
    settings = isolated(stack, count_flush_interval_s=3600.0)
    async with in_process(settings, stack.gateway_token) as gw:
        first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
        # Bound first: a repeat of a pending entry would go to PostgreSQL, which counts it at once.
        await wait_bound(stack, first.json()["signals"][0]["fingerprint"], settings.gateway.key_prefix)
        for _ in range(5):
            assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 202
        assert (await _requests(stack, name))[0]["occurrence_count"] == 1
    assert (await _requests(stack, name))[0]["occurrence_count"] == 6


async def test_resolved_then_firing_opens_a_second_request(stack: LocalStack) -> None:
    name = unique("Resolve")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
        resolved = await gw.post(PROMETHEUS, json=webhook(alert(name, status="resolved")))
        again = await gw.post(PROMETHEUS, json=webhook(alert(name)))
    assert first.status_code == 201
    assert resolved.status_code == 202
    assert resolved.json()["signals"][0]["outcome"] == "resolved"
    assert resolved.json()["signals"][0]["request_id"] == first.json()["signals"][0]["request_id"]
    assert again.status_code == 201
    assert again.json()["signals"][0]["outcome"] == "created"
    rows = await _requests(stack, name)
    assert len(rows) == 2
    assert rows[0]["resolved_at"] is not None
    assert rows[1]["resolved_at"] is None
    assert rows[0]["fingerprint"] == rows[1]["fingerprint"]


async def test_kubernetes_warning_event_creates_one_request_and_normal_is_refused(stack: LocalStack) -> None:
    reason = unique("BackOff")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        created = await gw.post(EVENTS, json=event(reason))
        repeat = await gw.post(EVENTS, json=event(reason))
        normal = await gw.post(EVENTS, json=event(reason, type_="Normal", name="other"))
    assert created.status_code == 201
    assert created.json()["signals"][0]["outcome"] == "created"
    assert repeat.status_code == 202
    assert normal.status_code == 400
    assert normal.headers["content-type"] == "application/problem+json"
    assert normal.json()["field"] == "type"
    rows = await _requests(stack, reason)
    assert len(rows) == 1
    assert rows[0]["signal_type"] == "kubernetes-event"
    assert (rows[0]["resource_kind"], rows[0]["resource_name"], rows[0]["namespace"]) == (
        "Pod",
        "api-0",
        "shop",
    )


async def test_oomkilled_event_is_critical(stack: LocalStack) -> None:
    ns = unique("ns")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        resp = await gw.post(EVENTS, json=event("OOMKilled", namespace=ns))
    assert resp.status_code == 201
    db = await connect_db(stack)
    try:
        severity = await db.fetchval(
            "SELECT severity FROM remediation_requests WHERE namespace = $1 AND signal_name = 'OOMKilled'", ns
        )
    finally:
        await db.close()
    assert severity == "critical"
