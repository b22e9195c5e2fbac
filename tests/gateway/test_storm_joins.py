"""Storm members joined in Redis (scripts/ingest.lua, "Bound storms") on the real stack: once a storm's
request is committed and bound to its window, a webhook of new members is answered from Redis, the
members reach PostgreSQL with the count flush, exactly once; a resolution in the group unbinds the
window and waits for them, so a storm closes only with every member it answered for stored; a voided
call's members are not stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from kubernaut.config import Settings
from kubernaut.gateway import ingest_protocol as protocol
from kubernaut.gateway.ingest_protocol import storm_group_key
from kubernaut.gateway.pipeline import VOID
from kubernaut.gateway.redis_state import INGEST
from kubernaut.gateway.signal import NormalizedSignal, fingerprint
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    in_process,
    isolated,
    unique,
    until_flushed,
    until_storm_bound,
    wait_bound,
    webhook,
)

pytestmark = pytest.mark.stack


def _settings(stack: LocalStack) -> Settings:
    return isolated(stack, rate_limit={"mode": "off"}, count_flush_interval_s=0.2)


async def _storm(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT r.id, r.occurrence_count, r.storm_alert_count, r.affected_resources, r.resolved_at,"
        " ARRAY(SELECT m.fingerprint FROM storm_members m WHERE m.request_id = r.id ORDER BY 1) AS members,"
        " ARRAY(SELECT m.fingerprint FROM storm_members m WHERE m.request_id = r.id"
        "       AND m.joined_by IS NOT NULL ORDER BY 1) AS joined_in_redis"
        " FROM remediation_requests r WHERE r.signal_name = $1 AND r.is_storm ORDER BY r.id",
        name,
    )


async def _open_bound_storm(
    stack: LocalStack, gw: httpx.AsyncClient, settings: Settings, name: str
) -> tuple[int, list[dict[str, Any]]]:
    """A webhook of 7 new alerts of one group on 7 pods: 5 requests, then a pattern storm of 2; until it
    is bound."""
    opened = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"p{i}") for i in range(7))))
    assert opened.status_code == 201, opened.text
    signals = opened.json()["signals"]
    assert [s["outcome"] for s in signals][5:] == ["storm_opened", "storm_aggregated"]
    storm_id = signals[5]["request_id"]
    await until_storm_bound(stack, settings.gateway.key_prefix, name, "shop", storm_id)
    return storm_id, signals


async def test_new_members_of_a_bound_storm_are_answered_from_redis_and_stored_once(
    stack: LocalStack,
) -> None:
    name, settings = unique("Joins"), _settings(stack)
    async with in_process(settings, stack.gateway_token) as gw:
        storm_id, first = await _open_bound_storm(stack, gw, settings, name)
        joined = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"q{i}") for i in range(5))))
        again = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="q0"), alert(name, pod="q9")))
        await until_flushed(stack, settings.gateway.key_prefix, within_s=30)
    assert joined.status_code == 202, joined.text
    members = joined.json()["signals"]
    assert {(s["outcome"], s["request_id"]) for s in members} == {("storm_aggregated", storm_id)}
    # q0 joined before (answered into the storm, maybe not yet stored): a duplicate; q9 new.
    repeat, new = again.json()["signals"]
    assert (repeat["outcome"], repeat["request_id"]) == ("duplicate", storm_id)
    (storm,) = await _storm(stack, name)
    expected = {s["fingerprint"] for s in first[5:]} | {s["fingerprint"] for s in members}
    expected.add(new["fingerprint"])
    assert set(storm["members"]) == expected
    assert storm["storm_alert_count"] == len(expected) == 8
    assert {s["fingerprint"] for s in members} <= set(storm["joined_in_redis"])
    assert storm["occurrence_count"] == 2 + 5 + 2  # the opening two, five joins, a repeat and one more
    # A joined member's dedup entry names its storm (a repeat is its duplicate, counted in Redis).
    assert joined.status_code == again.status_code == 202


@pytest.mark.parametrize("group_state", ["kept", "expired"])
async def test_a_storm_closes_only_with_its_redis_members_stored(stack: LocalStack, group_state: str) -> None:
    """The resolution of the opening members comes while the joined ones are still in Redis (no periodic
    flush here): it waits for them (its process flushes at once), and the storm stays open until they
    resolve too. Also when the group's storm hash is gone (no signal of the group for a while), which
    no longer says that the window was bound."""
    name = unique("JoinsClose")
    settings = isolated(stack, rate_limit={"mode": "off"}, count_flush_interval_s=3600)
    async with in_process(settings, stack.gateway_token) as gw:
        storm_id, _ = await _open_bound_storm(stack, gw, settings, name)
        joined = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"q{i}") for i in range(3))))
        assert {s["outcome"] for s in joined.json()["signals"]} == {"storm_aggregated"}
        (storm,) = await _storm(stack, name)
        assert storm["storm_alert_count"] == 2, "stored before any flush"
        if group_state == "expired":
            master = stack.current_master()
            assert master is not None
            redis = Redis(**stack.redis_auth(master[1]))
            try:
                assert await redis.delete(storm_group_key(settings.gateway.key_prefix, name, "shop")) == 1
            finally:
                await redis.aclose()
        resolve_opening = webhook(*(alert(name, pod=f"p{i}", status="resolved") for i in (5, 6)))
        assert (await gw.post(PROMETHEUS, json=resolve_opening)).status_code == 202
        (storm,) = await _storm(stack, name)
        assert storm["resolved_at"] is None, "closed with members answered for but not stored"
        assert storm["storm_alert_count"] == 5
        rest = ["q0", "q1", "q2"]
        if group_state == "kept":  # unbound now: a new member joins in PostgreSQL, in its own commit
            late = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="late")))
            assert late.json()["signals"][0]["outcome"] == "storm_aggregated"
            rest.append("late")
        resolve_rest = webhook(*(alert(name, pod=p, status="resolved") for p in rest))
        assert (await gw.post(PROMETHEUS, json=resolve_rest)).status_code == 202
    (storm,) = await _storm(stack, name)
    assert storm["id"] == storm_id
    assert storm["resolved_at"] is not None
    assert storm["storm_alert_count"] == 2 + len(rest)


async def test_the_members_of_a_voided_call_are_not_stored(stack: LocalStack) -> None:
    """A call the gateway gave up on (503) is voided: its occurrences are taken back and the members it
    joined in Redis are not written, or deleted if the flusher wrote them already."""
    name, settings = unique("JoinsVoid"), _settings(stack)
    async with in_process(settings, stack.gateway_token) as gw:
        storm_id, _ = await _open_bound_storm(stack, gw, settings, name)
        await until_flushed(stack, settings.gateway.key_prefix, within_s=30)
        (before,) = await _storm(stack, name)
        prefix, nonce = settings.gateway.key_prefix, uuid.uuid4().hex
        signals = [
            NormalizedSignal(
                "prometheus",
                name,
                True,
                "warning",
                "shop",
                "Pod",
                f"v{i}",
                {},
                {},
                fingerprint(name, "shop", "Pod", f"v{i}"),
            )
            for i in range(3)
        ]
        args = protocol.encode(prefix, nonce, "test", protocol.settings_args(settings.gateway), signals)
        master = stack.current_master()
        assert master is not None
        redis = Redis(**stack.redis_auth(master[1]))
        try:
            reply = protocol.decode(await redis.evalsha(INGEST.sha, 0, *args), len(signals))
            assert [(e.code, e.value) for e in reply.entries] == [(protocol.JOINED, str(storm_id))] * 3
            await until_flushed(stack, prefix, within_s=30)
            (written,) = await _storm(stack, name)
            assert written["storm_alert_count"] == before["storm_alert_count"] + 3
            await redis.script_load(VOID.source)
            assert await redis.evalsha(VOID.sha, 0, prefix, nonce, 60) == 3
        finally:
            await redis.aclose()
        await until_flushed(stack, prefix, within_s=30)
    (after,) = await _storm(stack, name)
    assert after["id"] == storm_id
    assert after["members"] == before["members"]
    assert after["storm_alert_count"] == before["storm_alert_count"]
    assert after["occurrence_count"] == before["occurrence_count"]
    assert after["affected_resources"] == before["affected_resources"]


@pytest.mark.parametrize("why", ["an older release flushes", "join_in_redis off"])
async def test_no_storm_is_bound_when_not_every_gateway_joins_in_redis(stack: LocalStack, why: str) -> None:
    """During a rolling update from a release without joins in Redis (a live flusher not among the
    joiners), or with them turned off, a storm stays unbound: its members join in PostgreSQL."""
    name = unique("JoinsGate")
    off = why == "join_in_redis off"
    settings = isolated(
        stack, rate_limit={"mode": "off"}, count_flush_interval_s=0.2, storm={"join_in_redis": not off}
    )
    prefix = settings.gateway.key_prefix
    master = stack.current_master()
    assert master is not None
    redis = Redis(**stack.redis_auth(master[1]))
    try:
        if not off:
            seconds, micros = await redis.time()
            await redis.zadd(f"{prefix}flushers", {"older-release": seconds * 1000 + micros // 1000})
        async with in_process(settings, stack.gateway_token) as gw:
            opened = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"p{i}") for i in range(7))))
            signals = opened.json()["signals"]
            assert [s["outcome"] for s in signals][5:] == ["storm_opened", "storm_aggregated"]
            await wait_bound(stack, signals[0]["fingerprint"], prefix)  # the bind call that binds storms ran
            assert await redis.hget(storm_group_key(prefix, name, "shop"), "bound") is None
            joined = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"q{i}") for i in range(3))))
            assert {s["outcome"] for s in joined.json()["signals"]} == {"storm_aggregated"}
            (storm,) = await _storm(stack, name)  # in PostgreSQL with the answer, by the webhook's commit
            assert storm["storm_alert_count"] == 5
            assert storm["joined_in_redis"] == []
    finally:
        await redis.aclose()
