"""Issue 4: storm detection and aggregation on the real stack; nothing buffered, nothing lost."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    gateway_process,
    in_process,
    isolated,
    unique,
    webhook,
    with_gateway,
)

pytestmark = pytest.mark.stack


async def _rows(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT r.id, r.fingerprint, r.resource_name, r.occurrence_count, r.is_storm, r.storm_type,"
        " r.storm_alert_count, r.affected_resources, r.affected_overflow, r.storm_window_start,"
        " r.storm_window_end, ARRAY(SELECT m.fingerprint FROM storm_members m WHERE m.request_id = r.id"
        " ORDER BY m.fingerprint) AS members"
        " FROM remediation_requests r WHERE r.signal_name = $1 ORDER BY r.id",
        name,
    )


async def _send_one_by_one(gw: httpx.AsyncClient, name: str, pods: range) -> list[dict[str, Any]]:
    signals = []
    for p in pods:
        resp = await gw.post(PROMETHEUS, json=webhook(alert(name, pod=f"p{p}")))
        assert resp.status_code in (201, 202), resp.text
        signals += resp.json()["signals"]
    return signals


def _check_six_requests(rows: list[dict[str, Any]], accepted: list[dict[str, Any]]) -> None:
    singles = [r for r in rows if not r["is_storm"]]
    storms = [r for r in rows if r["is_storm"]]
    assert len(rows) == 6
    assert sorted(r["resource_name"] for r in singles) == [f"p{p}" for p in range(1, 6)]
    (storm,) = storms
    assert storm["storm_type"] == "pattern"
    assert storm["storm_alert_count"] == 10
    assert sorted(storm["affected_resources"]) == sorted(f"Pod/p{p}" for p in range(6, 16))
    assert storm["members"] == sorted(s["fingerprint"] for s in accepted[5:])
    assert storm["storm_window_start"] <= storm["storm_window_end"]
    assert sum(r["occurrence_count"] for r in singles) + storm["storm_alert_count"] == 15
    # The HA drill's `lost` check: every accepted fingerprint has its request or a storm_members row.
    covered = {r["fingerprint"] for r in singles} | set(storm["members"])
    assert {s["fingerprint"] for s in accepted} <= covered


async def test_15_alerts_on_15_pods_make_5_requests_and_1_storm(stack: LocalStack) -> None:
    name = unique("PodCrash")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        accepted = await _send_one_by_one(gw, name, range(1, 16))
        metrics = (await gw.get("/metrics")).text
    outcomes = [s["outcome"] for s in accepted]
    assert outcomes == ["created"] * 5 + ["storm_opened"] + ["storm_aggregated"] * 9
    assert len({s["request_id"] for s in accepted[5:]}) == 1
    _check_six_requests(await _rows(stack, name), accepted)
    assert 'gateway_storms_detected_total{storm_type="pattern"} 1.0' in metrics
    assert "gateway_alerts_aggregated_total 10.0" in metrics
    assert 'gateway_remediation_requests_created_total{kind="storm"} 1.0' in metrics


async def test_the_same_15_alerts_in_one_webhook(stack: LocalStack) -> None:
    name = unique("PodCrashBatch")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        resp = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"p{p}") for p in range(1, 16))))
    assert resp.status_code == 201
    accepted = resp.json()["signals"]
    assert [s["outcome"] for s in accepted] == ["created"] * 5 + ["storm_opened"] + ["storm_aggregated"] * 9
    _check_six_requests(await _rows(stack, name), accepted)


async def test_a_repeat_of_a_member_counts_on_the_storm_request(stack: LocalStack) -> None:
    name = unique("Repeat")
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        accepted = await _send_one_by_one(gw, name, range(1, 8))
        again = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="p7")))
        assert again.json()["signals"][0]["outcome"] == "duplicate"
        assert again.json()["signals"][0]["request_id"] == accepted[-1]["request_id"]
        storm_id = accepted[-1]["request_id"]

        async def counted() -> None:
            while True:
                storm = next(r for r in await _rows(stack, name) if r["id"] == storm_id)
                if storm["occurrence_count"] == 3:  # p6, p7, and the repeat of p7
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(counted(), timeout=10)
    storm = next(r for r in await _rows(stack, name) if r["is_storm"])
    assert storm["storm_alert_count"] == 2


async def test_rate_storm_from_one_resource_firing_again_and_again(stack: LocalStack) -> None:
    name = unique("Flapping")
    outcomes = []
    async with in_process(isolated(stack), stack.gateway_token) as gw:
        for _ in range(11):
            fired = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="flappy")))
            outcomes.append(fired.json()["signals"][0]["outcome"])
            resolved = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="flappy", status="resolved")))
            assert resolved.json()["signals"][0]["outcome"] == "resolved"
    assert outcomes == ["created"] * 10 + ["storm_opened"]
    rows = await _rows(stack, name)
    assert [r["storm_type"] for r in rows if r["is_storm"]] == ["rate"]
    assert len(rows) == 11


async def test_affected_resources_are_capped_with_an_overflow_count(stack: LocalStack) -> None:
    name = unique("Capped")
    settings = isolated(stack, storm={"max_affected_resources": 3})
    async with in_process(settings, stack.gateway_token) as gw:
        await _send_one_by_one(gw, name, range(1, 16))
    (storm,) = [r for r in await _rows(stack, name) if r["is_storm"]]
    assert storm["storm_alert_count"] == 10
    assert storm["affected_resources"] == ["Pod/p6", "Pod/p7", "Pod/p8"]  # the first three to join
    assert storm["affected_overflow"] == 7
    assert len(storm["members"]) == 10

    # A storm that has overflowed keeps its list (it is not rebuilt on every join), even under a raised
    # cap: the later resources are counted, so list + overflow still covers every member.
    raised = with_gateway(settings, storm={"max_affected_resources": 5})
    async with in_process(raised, stack.gateway_token) as gw:
        await _send_one_by_one(gw, name, range(16, 19))
    (storm,) = [r for r in await _rows(stack, name) if r["is_storm"]]
    assert storm["storm_alert_count"] == 13
    assert storm["affected_resources"] == ["Pod/p6", "Pod/p7", "Pod/p8"]
    assert storm["affected_overflow"] == 10


async def test_after_inactivity_a_new_alert_opens_a_new_request(stack: LocalStack) -> None:
    name, namespace = unique("Quiet"), "shop"
    settings = isolated(stack, storm={"pattern_window_s": 2, "inactivity_s": 3})
    prefix = settings.gateway.key_prefix
    async with in_process(settings, stack.gateway_token) as gw:
        # One webhook, one script call on one clock: the storm opens however slowly this machine commits.
        resp = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"p{p}") for p in range(1, 8))))
        assert resp.status_code == 201, resp.text
        accepted = resp.json()["signals"]
        assert [s["outcome"] for s in accepted[-2:]] == ["storm_opened", "storm_aggregated"]
        master = stack.current_master()
        assert master is not None
        r = aioredis.Redis(**stack.redis_auth(master[1]))
        try:
            window = f"{prefix}storm:{len(namespace)}:{namespace}:{name}"
            last_join = await r.hget(window, "seen")
            assert last_join is not None
            while True:  # the window closes by itself after `inactivity_s` of quiet, on Redis's clock
                seconds, micros = await r.time()
                if seconds * 1000 + micros // 1000 - int(last_join) > 3000:
                    break
                await asyncio.sleep(0.1)
        finally:
            await r.aclose()
        later = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="p8")))
    assert later.json()["signals"][0]["outcome"] == "created"
    assert later.json()["signals"][0]["request_id"] not in {s["request_id"] for s in accepted}


async def test_a_second_gateway_process_continues_the_storm(stack: LocalStack, gateway_url: str) -> None:
    name = unique("TwoReplicas")
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    port = stack.topology.gateway_http + 102
    with gateway_process(stack, "gateway-second", port) as second_url:
        async with (
            httpx.AsyncClient(base_url=gateway_url, headers=headers) as first,
            httpx.AsyncClient(base_url=second_url, headers=headers) as second,
        ):
            accepted = await _send_one_by_one(first, name, range(1, 7))
            assert accepted[-1]["outcome"] == "storm_opened"
            continued = await _send_one_by_one(second, name, range(7, 10))
    assert [s["outcome"] for s in continued] == ["storm_aggregated"] * 3
    assert {s["request_id"] for s in continued} == {accepted[-1]["request_id"]}
    (storm,) = [r for r in await _rows(stack, name) if r["is_storm"]]
    assert storm["storm_alert_count"] == 4
