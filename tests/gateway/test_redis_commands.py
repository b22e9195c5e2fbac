"""Invariant 6 measured: Redis commands per alert on the hot path, from the master's INFO commandstats,
over 1,000 alerts in 20 webhooks sent to the real gateway process (default config: storms and rate
limiting on)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import PROMETHEUS, alert, connect_db, unique, webhook

pytestmark = pytest.mark.stack

WEBHOOKS, PER_WEBHOOK = 20, 50
ALERTS = WEBHOOKS * PER_WEBHOOK
# What the sentinels and replicas ask of a master on their own, not the gateway's doing.
HOUSEKEEPING = {"info", "ping", "publish", "replconf", "psync", "sync", "role", "subscribe", "hello"}


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if name.removeprefix("cmdstat_").split("|")[0] not in HOUSEKEEPING
        and not name.startswith("cmdstat_config")
    }


async def _measure(
    client: httpx.AsyncClient, master: aioredis.Redis, bodies: list[dict[str, Any]]
) -> dict[str, int]:
    await master.config_resetstat()
    for body in bodies:
        resp = await client.post(PROMETHEUS, json=body)
        assert resp.status_code in (201, 202), resp.text
    return _calls(await master.info("commandstats"))


async def _settled(stack: LocalStack, name_like: str, expected_total: int) -> None:
    """Wait until every occurrence is in PostgreSQL (the batched flush and the binds have run)."""
    db = await connect_db(stack)
    try:
        while True:
            total = await db.fetchval(
                "SELECT coalesce(sum(occurrence_count), 0) FROM remediation_requests"
                " WHERE signal_name LIKE $1",
                name_like,
            )
            if total == expected_total:
                return
            await asyncio.sleep(0.1)
    finally:
        await db.close()


async def test_redis_commands_per_alert(stack: LocalStack, gateway_url: str) -> None:
    prefix = unique("Cmd")
    # Alertmanager groups by alert name: 10 names x 5 pods per webhook, no storm (5 resources or fewer).
    quiet = [
        webhook(*(alert(f"{prefix}q{w}n{n}", pod=f"p{p}") for n in range(10) for p in range(5)))
        for w in range(WEBHOOKS)
    ]
    # One alert name on 50 pods per webhook: 5 requests, then a pattern storm takes in the other 45.
    storm = [
        webhook(*(alert(f"{prefix}s{w}", pod=f"p{p}") for p in range(PER_WEBHOOK))) for w in range(WEBHOOKS)
    ]
    master_addr = stack.current_master()
    assert master_addr is not None
    master = aioredis.Redis(**stack.redis_auth(master_addr[1]))
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    figures = {}
    try:
        async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as client:
            figures["new"] = await _measure(client, master, quiet)
            await _settled(stack, f"{prefix}q%", ALERTS)
            figures["repeat"] = await _measure(client, master, quiet)
            await _settled(stack, f"{prefix}q%", 2 * ALERTS)
            figures["storm"] = await _measure(client, master, storm)
            await _settled(stack, f"{prefix}s%", ALERTS)
            figures["storm repeat"] = await _measure(client, master, storm)
    finally:
        await master.aclose()

    for phase, calls in figures.items():
        sent = sum(n for cmd, n in calls.items() if cmd.startswith(("evalsha", "script", "client")))
        executed = sum(calls.values()) - sent
        print(  # the figures for the report (pytest -s)
            f"\n{phase}: {ALERTS} alerts in {WEBHOOKS} webhooks: commands sent by the gateway "
            f"{sent / ALERTS:.3f}/alert (evalsha {calls.get('evalsha', 0)}); commands the scripts ran "
            f"{executed / ALERTS:.2f}/alert; {sorted(calls.items())}"
        )
        assert sent / ALERTS <= 2, f"{phase}: {sent} commands for {ALERTS} alerts"
        # The hot path is one EVALSHA per webhook; binds and flushes add a few per second.
        assert calls.get("evalsha", 0) <= 2 * WEBHOOKS + 5
    # New alerts: per alert GETEX + SET (the dedup entry), GET + SET (its bind after PostgreSQL); per
    # (namespace, name) group and webhook one HMGET and one HSET of its storm hash, and a PEXPIRE the
    # first time (every group here is new); per webhook the same fixed few as for duplicates and the
    # GET + SET of the seq clock (a webhook that goes to PostgreSQL). 13.1 per alert before the storm
    # state became one hash per group.
    new, groups = figures["new"], 10 * WEBHOOKS
    assert new["getex"] == ALERTS
    assert (new.get("hmget"), new.get("hset"), new.get("pexpire")) == (groups, groups, groups)
    assert "zcount" not in new
    assert "zremrangebyrank" not in new
    assert sum(new.values()) - new["evalsha"] <= 4 * ALERTS + 3 * groups + 10 * WEBHOOKS
    # The storm: one group per webhook, its hash read and written once (and ZADD to the open-storm index).
    storm_calls = figures["storm"]
    assert (storm_calls.get("hmget"), storm_calls.get("hset")) == (WEBHOOKS, WEBHOOKS)
    assert sum(storm_calls.values()) - storm_calls["evalsha"] <= 4 * ALERTS + 4 * WEBHOOKS + 10 * WEBHOOKS
    # Duplicates, the steady state: GETEX + HINCRBY per alert inside the one call; per webhook a fixed few
    # (TIME, the rate limit's GET/SET, the ran:<nonce> record, the batch id's HSETNX, one WAIT), plus the
    # flusher's take once a second.
    repeat = figures["repeat"]
    assert repeat["getex"] == ALERTS
    assert repeat["hincrby"] == ALERTS
    per_webhook = (sum(repeat.values()) - repeat["evalsha"] - 2 * ALERTS) / WEBHOOKS
    assert per_webhook <= 10, f"{per_webhook} commands per webhook beside the per-alert two"
    # A storm's duplicates: GETEX per alert, one HINCRBY per request (its 5 requests and the storm's).
    storm_repeat = figures["storm repeat"]
    assert storm_repeat["getex"] == ALERTS
    assert storm_repeat["hincrby"] == 6 * WEBHOOKS
