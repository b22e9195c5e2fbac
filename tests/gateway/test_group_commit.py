"""Concurrent webhooks whose PostgreSQL writes are committed together (group commit) still get each
their own outcome: one storm opened, each member taken in once, every occurrence counted once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import PROMETHEUS, alert, connect_db, in_process, isolated, unique, webhook

pytestmark = pytest.mark.stack

PODS = 60
OFF = {"mode": "off"}


async def test_concurrent_webhooks_share_commits_but_not_outcomes(stack: LocalStack) -> None:
    name = unique("Group")
    settings = isolated(stack, rate_limit=OFF)
    async with in_process(settings, stack.gateway_token) as gw:
        # Each webhook brings one new pod of the same alert, all at once: the first few are requests
        # of their own, then a pattern storm takes in the rest, its row contended by every webhook.
        replies = await asyncio.gather(
            *(gw.post(PROMETHEUS, json=webhook(alert(name, pod=f"p{p}"))) for p in range(PODS))
        )
        assert all(r.status_code in (201, 202) for r in replies), [r.text for r in replies]
        outcomes = Counter(r.json()["signals"][0]["outcome"] for r in replies)
        # The same webhooks again: every one a duplicate now.
        again = await asyncio.gather(
            *(gw.post(PROMETHEUS, json=webhook(alert(name, pod=f"p{p}"))) for p in range(PODS))
        )
        assert {r.json()["signals"][0]["outcome"] for r in again} == {"duplicate"}

    assert outcomes["storm_opened"] == 1
    assert outcomes["created"] + outcomes["storm_opened"] + outcomes["storm_aggregated"] == PODS
    db = await connect_db(stack)
    try:
        rows = await db.fetch(
            "SELECT is_storm, storm_alert_count FROM remediation_requests WHERE signal_name = $1", name
        )
    finally:
        await db.close()
    storms = [r for r in rows if r["is_storm"]]
    assert len(storms) == 1
    assert storms[0]["storm_alert_count"] == outcomes["storm_opened"] + outcomes["storm_aggregated"]
    assert len(rows) - 1 == outcomes["created"]
