"""Invariant 6 measured: Redis commands per alert on the hot path, over 1,000 alerts in 20 webhooks sent
to a real gateway process of the test's own (default config: storms and rate limiting on). The master's
MONITOR feed names every command with its arguments and, for a script's own commands, the EVALSHA they
ran in: the figures count each script apart, and only the calls on this gateway's key prefix (the
stack's other gateways, voiding an earlier test's refused calls or taking Alertmanager's webhooks, share
the master). The per-webhook calls are counted exactly, the count flusher's once-a-second take (as many as
the phase lasted seconds) not at all."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from kubernaut.gateway.pipeline import VOID
from kubernaut.gateway.redis_state import BIND, INGEST, TAKE_COUNTS
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import PROMETHEUS, alert, connect_db, gateway_process, unique, webhook
from tests.ports import free_port

pytestmark = pytest.mark.stack

WEBHOOKS, PER_WEBHOOK = 20, 50
ALERTS = WEBHOOKS * PER_WEBHOOK
# What the sentinels and replicas ask of a master on their own, not the gateway's doing.
HOUSEKEEPING = {
    "info",
    "ping",
    "publish",
    "replconf",
    "psync",
    "sync",
    "role",
    "subscribe",
    "hello",
    "config",
}
SCRIPTS = {script.sha: script for script in (INGEST, BIND, TAKE_COUNTS, VOID)}
MARKER = unique("phase-end")


@dataclass
class Phase:
    calls: Counter[str] = field(default_factory=Counter)  # EVALSHA calls by script name
    ran: dict[str, Counter[str]] = field(default_factory=dict)  # commands run inside each script
    sent: Counter[str] = field(default_factory=Counter)  # the gateway's other commands (WAIT, SCRIPT...)
    replicated: int = 0  # calls waited for a replica

    def inside(self, *scripts: str) -> Counter[str]:
        return sum((self.ran.get(s, Counter()) for s in scripts), Counter())


class Feed:
    """The master's MONITOR feed, taken apart as it comes: a phase ends at each marker the test sends; a
    script's own commands follow its EVALSHA (ARGV[1] the key prefix of the gateway that called it)."""

    def __init__(self, key_prefix: str) -> None:
        self.phases = [Phase()]
        self.grew = asyncio.Event()
        self.failed: BaseException | None = None  # why the recording stopped early
        self._key_prefix = key_prefix
        self._script: str | None = None  # the script running, None for another gateway's

    def add(self, entry: dict[str, Any]) -> None:
        words = entry["command"].split(" ", 4)
        name, phase = words[0].lower(), self.phases[-1]
        if entry["client_type"] == "lua":
            if self._script:
                phase.ran.setdefault(self._script, Counter())[name] += 1
        elif entry["command"] == f"ECHO {MARKER}":
            self.phases.append(Phase())
        elif name == "evalsha":
            script = SCRIPTS[words[1]]
            phase.replicated += script.replicate  # WAITs name no caller: bounded by every gateway's calls
            self._script = script.name if words[3] == self._key_prefix else None
            if self._script:
                phase.calls[script.name] += 1
        elif name not in HOUSEKEEPING:
            phase.sent[name] += 1
        self.grew.set()

    async def until_bound(self, alerts: int) -> None:
        """Until the binds of the phase under way have run for ``alerts`` dedup entries: a repeat of an
        alert whose entry still holds its pending marker would go to PostgreSQL again."""
        async with asyncio.timeout(30):
            while self.phases[-1].inside("bind")["set"] < alerts:
                if self.failed:
                    raise AssertionError("the MONITOR feed stopped") from self.failed
                self.grew.clear()
                await self.grew.wait()


@contextlib.asynccontextmanager
async def _monitored(master: aioredis.Redis, key_prefix: str, markers: int) -> AsyncIterator[Feed]:
    """The master's feed, recorded until the test has sent ``markers`` markers."""
    feed = Feed(key_prefix)

    async def record() -> None:
        try:
            async for entry in monitor.listen():
                feed.add(entry)
                if len(feed.phases) > markers:
                    return
        except Exception as err:
            feed.failed = err
            feed.grew.set()
            raise

    async with master.monitor() as monitor:
        reader = asyncio.create_task(record())
        try:
            yield feed
            await asyncio.wait_for(reader, 30)
        finally:
            reader.cancel()


async def _send(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        resp = await client.post(PROMETHEUS, json=body)
        assert resp.status_code in (201, 202), resp.text


async def _settled(stack: LocalStack, name_like: str, expected_total: int) -> None:
    """Wait (30 s at most) until every occurrence is in PostgreSQL (the batched flush has run)."""
    sql = "SELECT coalesce(sum(occurrence_count), 0) FROM remediation_requests WHERE signal_name LIKE $1"
    db = await connect_db(stack)
    try:
        deadline = time.monotonic() + 30
        while (total := await db.fetchval(sql, name_like)) != expected_total:
            assert time.monotonic() < deadline, f"{name_like}: {total} in PostgreSQL, not {expected_total}"
            await asyncio.sleep(0.1)
    finally:
        await db.close()


async def test_redis_commands_per_alert(stack: LocalStack) -> None:
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
    plan = {  # phase: (webhooks, alerts new to the gateway, signal names, occurrences in PostgreSQL after)
        "new": (quiet, ALERTS, f"{prefix}q%", ALERTS),
        "repeat": (quiet, 0, f"{prefix}q%", 2 * ALERTS),
        "storm": (storm, ALERTS, f"{prefix}s%", ALERTS),
        "storm repeat": (storm, 0, f"{prefix}s%", ALERTS),
    }
    key_prefix = f"gwcmd:{prefix.removeprefix('Cmd')}:"
    master_addr = stack.current_master()
    assert master_addr is not None
    master = aioredis.Redis(**stack.redis_auth(master_addr[1]))
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    port = free_port()
    try:
        with gateway_process(stack, "gateway-commands", port, key_prefix=key_prefix) as url:
            async with (
                httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client,
                _monitored(master, key_prefix, markers=len(plan)) as feed,
            ):
                for bodies, new_alerts, like, total in plan.values():
                    await _send(client, bodies)
                    await feed.until_bound(new_alerts)
                    await _settled(stack, like, total)
                    await master.echo(MARKER)
    finally:
        await master.aclose()
    phases = dict(zip(plan, feed.phases[: len(plan)], strict=True))

    for name, phase in phases.items():
        hot = phase.inside("ingest", "bind")
        print(  # the figures for the report (pytest -s)
            f"\n{name}: {ALERTS} alerts in {WEBHOOKS} webhooks: EVALSHA {dict(phase.calls)}, other commands "
            f"sent {dict(phase.sent)}; run inside ingest and bind {hot.total() / ALERTS:.2f}/alert: "
            f"{sorted(hot.items())}"
        )
        # The hot path is one ingest call per webhook, and one bind per webhook with new alerts at most;
        # a replicated call's WAIT is shared by the calls of one round trip.
        assert phase.calls["ingest"] == WEBHOOKS
        assert phase.calls["bind"] <= (WEBHOOKS if plan[name][1] else 0)
        assert phase.sent["wait"] <= phase.replicated
        assert phase.inside("bind")["get"] == plan[name][1]
    # New alerts: per alert GETEX + SET (the dedup entry), GET + SET (its bind after PostgreSQL); per
    # (namespace, name) group and webhook one HMGET and one HSET of its storm hash, and a PEXPIRE the
    # first time (every group here is new); per webhook a fixed few (TIME, the rate limit, the seq clock
    # of a webhook that goes to PostgreSQL). 13.1 per alert before the storm state became one hash per group.
    new, groups = phases["new"].inside("ingest", "bind"), 10 * WEBHOOKS
    assert new["getex"] == ALERTS
    assert (new["hmget"], new["hset"], new["pexpire"]) == (groups, groups, groups)
    assert new["zcount"] == new["zremrangebyrank"] == 0
    assert new.total() <= 4 * ALERTS + 3 * groups + 10 * WEBHOOKS
    # The storm: one group per webhook, its hash read and written once (and ZADD to the open-storm index),
    # and once more by the bind of the storm opened (its request id to its window).
    storm_ran = phases["storm"].inside("ingest", "bind")
    assert (storm_ran["hmget"], storm_ran["hset"]) == (2 * WEBHOOKS, 2 * WEBHOOKS)
    assert phases["storm"].inside("bind")["hset"] == WEBHOOKS
    assert storm_ran.total() <= 4 * ALERTS + 6 * WEBHOOKS + 10 * WEBHOOKS
    # Duplicates, the steady state: GETEX + HINCRBY per alert inside the one call; per webhook a fixed few
    # (TIME, the rate limit's GET/SET, the ran:<nonce> record, the batch id's HSETNX).
    repeat = phases["repeat"].inside("ingest")
    assert repeat["getex"] == repeat["hincrby"] == ALERTS
    per_webhook = (repeat.total() - 2 * ALERTS) / WEBHOOKS
    assert per_webhook <= 10, f"{per_webhook} commands per webhook beside the per-alert two"
    # A storm's duplicates: GETEX per alert, one HINCRBY per request (its 5 requests and the storm's).
    storm_repeat = phases["storm repeat"].inside("ingest")
    assert storm_repeat["getex"] == ALERTS
    assert storm_repeat["hincrby"] == 6 * WEBHOOKS
