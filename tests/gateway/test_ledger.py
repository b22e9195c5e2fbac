"""Issue 12 items 1 and 3: a webhook's outcomes follow its batch order exactly as if its alerts were sent
one by one, and a refused webhook changes no count."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kubernaut_tools.localstack import LocalStack
from tests.contextapi.replicas import make_settings, open_replica
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    gateway_process,
    in_process,
    isolated,
    master_node,
    unique,
    wait_bound,
    webhook,
)

pytestmark = pytest.mark.stack

OFF = {"mode": "off"}


async def _rows(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT id, fingerprint, occurrence_count, resolved_at IS NULL AS open FROM remediation_requests"
        " WHERE signal_name = $1 ORDER BY id",
        name,
    )


def _outcomes(resp: httpx.Response) -> list[tuple[str, int | None]]:
    return [(s["outcome"], s["request_id"]) for s in resp.json()["signals"]]


async def test_resolved_and_firing_of_one_fingerprint_in_one_webhook(stack: LocalStack) -> None:
    """Item 1: `[a resolved, b firing]` where a and b differ only in a label the fingerprint ignores."""
    name = unique("SameFp")
    a = alert(name, container="app")
    b_ = alert(name, container="sidecar")
    a_resolved = {**a, "status": "resolved"}
    async with in_process(isolated(stack, rate_limit=OFF), stack.gateway_token) as gw:
        first = await gw.post(PROMETHEUS, json=webhook(a, b_))
        assert [o for o, _ in _outcomes(first)] == ["created", "duplicate"]
        x = _outcomes(first)[0][1]

        mixed = await gw.post(PROMETHEUS, json=webhook(a_resolved, b_))
        assert mixed.status_code == 201, mixed.text
        (res, rid_res), (new, y) = _outcomes(mixed)
        assert (res, rid_res) == ("resolved", x)
        assert new == "created"
        assert y != x

        # Later repeats of b count onto the open request y, never onto the closed x.
        for _ in range(3):
            again = await gw.post(PROMETHEUS, json=webhook(b_))
            assert _outcomes(again) == [("duplicate", y)]

        # The same webhook again: y is closed, and a new request z is open afterwards.
        resent = await gw.post(PROMETHEUS, json=webhook(a_resolved, b_))
        (res2, rid2), (new2, z) = _outcomes(resent)
        assert (res2, rid2) == ("resolved", y)
        assert new2 == "created"
        assert z not in (x, y)
        assert _outcomes(await gw.post(PROMETHEUS, json=webhook(b_))) == [("duplicate", z)]
        await _until(lambda rows: [r["occurrence_count"] for r in rows] == [2, 4, 2], stack, name)

    rows = await _rows(stack, name)
    assert [(r["id"], r["open"]) for r in rows] == [(x, False), (y, False), (z, True)]


async def test_firing_resolved_firing_of_a_new_fingerprint_in_one_webhook(stack: LocalStack) -> None:
    name = unique("FRF")
    a = alert(name)
    r = {**a, "status": "resolved"}
    async with in_process(isolated(stack, rate_limit=OFF), stack.gateway_token) as gw:
        resp = await gw.post(PROMETHEUS, json=webhook(a, a, r, a, r, a, a))
        outs = _outcomes(resp)
        assert [o for o, _ in outs] == [
            "created",
            "duplicate",
            "resolved",
            "created",
            "resolved",
            "created",
            "duplicate",
        ]
        ids = [rid for _, rid in outs]
        assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] != ids[5] == ids[6]
        # The open request is the last one, and the dedup entry points at it.
        assert _outcomes(await gw.post(PROMETHEUS, json=webhook(a))) == [("duplicate", ids[5])]
        await _until(lambda rows: [r["occurrence_count"] for r in rows] == [2, 1, 3], stack, name)
        # Two resolutions in a row: the second closes nothing (found by the model test).
        twice = await gw.post(PROMETHEUS, json=webhook(r, r))
        assert _outcomes(twice) == [("resolved", ids[5]), ("resolved", None)]
    rows = await _rows(stack, name)
    assert [(row["id"], row["open"]) for row in rows] == [(ids[0], False), (ids[3], False), (ids[5], False)]


async def test_a_refused_webhook_counts_nothing(stack: LocalStack) -> None:
    """Item 3: a webhook of known duplicates plus one new alert is refused (PostgreSQL stopped) after
    the Redis script ran; the retry's counts are exactly the ones of one acceptance."""
    name = unique("Refused")
    port = stack.topology.gateway_http + 131
    with gateway_process(stack, "gateway-refused", port, RATE_LIMIT__MODE="off") as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
            first = await client.post(PROMETHEUS, json=webhook(alert(name, pod="old")))
            assert first.status_code == 201
            rid = _outcomes(first)[0][1]
            repeat = await client.post(PROMETHEUS, json=webhook(alert(name, pod="old")))
            assert _outcomes(repeat) == [("duplicate", rid)]
            await _until(lambda rows: [r["occurrence_count"] for r in rows] == [2], stack, name)

            mixed = webhook(alert(name, pod="old"), alert(name, pod="old"), alert(name, pod="new"))
            stack.stop_component("postgres", sig=signal.SIGINT)
            try:
                for _ in range(3):
                    refused = await client.post(PROMETHEUS, json=mixed)
                    assert refused.status_code == 503
            finally:
                await asyncio.to_thread(stack.up, services=False, timeout=90)
            deadline = time.monotonic() + 30
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            accepted = await client.post(PROMETHEUS, json=mixed)
            assert accepted.status_code == 201, accepted.text
            assert [o for o, _ in _outcomes(accepted)] == ["duplicate", "duplicate", "created"]
            # old: 2 before + 2 in the accepted webhook; a count flush must add nothing more.
            await _until(lambda rows: [r["occurrence_count"] for r in rows] == [4, 1], stack, name)
            settle = await client.post(PROMETHEUS, json=webhook(alert(name, pod="old")))
            assert _outcomes(settle) == [("duplicate", rid)]
            await _until(lambda rows: [r["occurrence_count"] for r in rows] == [5, 1], stack, name)


async def _until(check: Any, stack: LocalStack, name: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        rows = await _rows(stack, name)
        if check(rows):
            return
        assert time.monotonic() < deadline, f"rows never matched: {rows}"
        await asyncio.sleep(0.1)


async def test_truncated_alerts_are_counted_and_logged(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 5: Alertmanager's `truncatedAlerts` (its receiver's `max_alerts`) raises a metric and logs."""
    name = unique("Trunc")
    hook = {
        **webhook(alert(name)),
        "receiver": "kubernaut-storms",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
    }
    group_key = f'{{}}:{{alertname=\\"{name}\\"}}'  # as Prometheus escapes a label value
    series = f'gateway_alerts_truncated_total{{group_key="{group_key}",receiver="kubernaut-storms"}}'
    async with in_process(isolated(stack, rate_limit=OFF), stack.gateway_token) as gw:
        assert series not in (await gw.get("/metrics")).text
        assert (await gw.post(PROMETHEUS, json={**hook, "truncatedAlerts": 7})).status_code == 201
        assert f"{series} 7.0" in (await gw.get("/metrics")).text
        assert (await gw.post(PROMETHEUS, json={**hook, "truncatedAlerts": 0})).status_code == 202
        assert f"{series} 7.0" in (await gw.get("/metrics")).text
        bad = await gw.post(PROMETHEUS, json={**hook, "truncatedAlerts": -1})
        assert bad.status_code == 400
        assert bad.json()["field"] == "truncatedAlerts"
    out = capsys.readouterr()
    assert "alertmanager truncated a webhook" in out.out + out.err


async def test_alert_times_come_from_starts_at_and_ends_at(stack: LocalStack) -> None:
    """Item 6: first_seen / resolved_at are the alert's startsAt / endsAt when sane; the receipt times
    are kept in received_at / resolved_received_at."""
    name = unique("Times")
    now = datetime.now(UTC)
    started, ended = now - timedelta(minutes=10), now - timedelta(minutes=1)
    sane = {**alert(name, pod="sane"), "startsAt": started.isoformat()}
    future = {**alert(name, pod="future"), "startsAt": (now + timedelta(hours=1)).isoformat()}
    ancient = {**alert(name, pod="ancient"), "startsAt": "0001-01-01T00:00:00Z"}
    async with in_process(isolated(stack, rate_limit=OFF), stack.gateway_token) as gw:
        assert (await gw.post(PROMETHEUS, json=webhook(sane, future, ancient))).status_code == 201
        resolved = {**sane, "status": "resolved", "endsAt": ended.isoformat()}
        assert (await gw.post(PROMETHEUS, json=webhook(resolved))).status_code == 202
    after = datetime.now(UTC)
    rows = {
        r["resource_name"]: r
        for r in await fetch_rows(
            stack,
            "SELECT resource_name, first_seen, received_at, resolved_at, resolved_received_at"
            " FROM remediation_requests WHERE signal_name = $1",
            name,
        )
    }
    assert rows["sane"]["first_seen"] == started
    assert now <= rows["sane"]["received_at"] <= after
    assert rows["sane"]["resolved_at"] == ended
    assert now <= rows["sane"]["resolved_received_at"] <= after
    for pod in ("future", "ancient"):
        assert rows[pod]["first_seen"] == rows[pod]["received_at"]
        assert now <= rows[pod]["first_seen"] <= after


async def test_storm_links_earlier_requests_and_closes_when_its_members_resolve(stack: LocalStack) -> None:
    """Item 7: 15 pods -> 5 singles + a storm of 10; the 5 point at the storm (PostgreSQL and the
    Context-API's incident JSON); the storm closes when its last member resolves, not before."""
    name = unique("StormLife")
    pods = [alert(name, pod=f"p{p}") for p in range(1, 16)]
    async with in_process(isolated(stack, rate_limit=OFF), stack.gateway_token) as gw:
        outs = []
        for a in pods:
            outs += _outcomes(await gw.post(PROMETHEUS, json=webhook(a)))
        assert [o for o, _ in outs] == ["created"] * 5 + ["storm_opened"] + ["storm_aggregated"] * 9
        storm_id = outs[5][1]
        singles = [rid for _, rid in outs[:5]]
        resolved = [{**a, "status": "resolved"} for a in pods[5:]]
        first_nine = await gw.post(PROMETHEUS, json=webhook(*resolved[:9]))
        assert _outcomes(first_nine) == [("resolved", storm_id)] * 9
        rows = await fetch_rows(stack, "SELECT resolved_at FROM remediation_requests WHERE id = $1", storm_id)
        assert rows[0]["resolved_at"] is None, "the storm closed while a member still fires"
        last = await gw.post(PROMETHEUS, json=webhook(resolved[9]))
        assert _outcomes(last) == [("resolved", storm_id)]

    rows = await fetch_rows(
        stack,
        "SELECT id, is_storm, storm_request_id, resolved_at FROM remediation_requests"
        " WHERE signal_name = $1 ORDER BY id",
        name,
    )
    assert [(r["id"], r["storm_request_id"]) for r in rows if not r["is_storm"]] == [
        (rid, storm_id) for rid in singles
    ]
    (storm,) = [r for r in rows if r["is_storm"]]
    assert storm["resolved_at"] is not None
    assert all(r["resolved_at"] is None for r in rows if not r["is_storm"])

    ctx = make_settings(stack, stack.postgres_dsn, f"ctxt:{name}:")
    async with open_replica(ctx) as replica:
        incident = (await replica.get(f"/api/v1/incidents/{singles[0]}")).json()
        assert incident["storm_request_id"] == storm_id
        assert (await replica.get(f"/api/v1/incidents/{storm_id}")).json()["storm_request_id"] is None


async def test_a_webhook_refused_for_a_hung_master_counts_nothing(stack: LocalStack) -> None:
    """Item 3, the Redis side: a webhook of duplicates whose call reaches a hung master (SIGSTOP, longer
    than the call timeout, shorter than Sentinel's down-after) is answered 503; the master runs the call
    when it resumes, and the gateway takes those counts back, so the client's retry counts them once."""
    name = unique("Hung")
    prefix = f"gwt:{uuid.uuid4().hex[:8]}:"
    port = stack.topology.gateway_http + 151
    with gateway_process(stack, "gateway-hung", port, RATE_LIMIT__MODE="off", KEY_PREFIX=prefix) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            first = await client.post(PROMETHEUS, json=webhook(alert(name)))
            rid = _outcomes(first)[0][1]
            fp = first.json()["signals"][0]["fingerprint"]
            master, node = master_node(stack)
            # Duplicates are counted by the script only once the dedup entry holds the request id.
            await wait_bound(stack, fp, prefix)

            duplicates = webhook(alert(name), alert(name))
            assert stack.signal_component(node, signal.SIGSTOP)
            try:
                refused = await client.post(PROMETHEUS, json=duplicates)
            finally:
                await asyncio.sleep(1.0)  # the refused call stays buffered on the hung master
                stack.signal_component(node, signal.SIGCONT)
            assert refused.status_code == 503, refused.text
            assert stack.current_master() == master, "the hang must stay below Sentinel's down-after"

            deadline = time.monotonic() + 30
            while (accepted := await client.post(PROMETHEUS, json=duplicates)).status_code == 503:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            assert _outcomes(accepted) == [("duplicate", rid), ("duplicate", rid)]
            # 1 (created) + 2 (the accepted retry); the refused call's 2 must be taken back.
            await _until(lambda rows: [r["occurrence_count"] for r in rows] == [3], stack, name)
            settle = await client.post(PROMETHEUS, json=webhook(alert(name)))
            assert _outcomes(settle) == [("duplicate", rid)]
            await _until(lambda rows: [r["occurrence_count"] for r in rows] == [4], stack, name)
