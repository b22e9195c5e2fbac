"""Storm members joined in Redis under seeded faults (scripts/ingest.lua, "Bound storms"): webhooks of new
members and repeats from several senders at once, while the gateway group's master hangs just longer than
the gateway's Redis timeout (calls in flight are refused with 503 and voided, yet run when it resumes) or
for less, and resolutions race the joins. Every answer is recorded and PostgreSQL audited against it:
every member acknowledged is stored, none only refused is, the storm's counts are exact, and it closes
only once every member it took in has resolved."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from kubernaut.gateway.signal import fingerprint
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    gateway_process,
    master_node,
    metric,
    until_flushed,
    until_storm_bound,
    webhook,
)
from tests.ports import free_port

pytestmark = pytest.mark.ha

# More seeds for a longer run: KUBERNAUT_JOIN_FAULT_SEEDS=1,2,3,... (about 25 s each).
SEEDS = tuple(int(seed) for seed in os.environ.get("KUBERNAUT_JOIN_FAULT_SEEDS", "7,31").split(","))
SENDERS = 3
# Per round: a hang shorter than the gateway's Redis call timeout (connect_s + socket_s = 1.5 s), which calls
# in flight wait out; one longer, after which they are refused and voided, yet run when the master resumes
# (and the gateway counts in PostgreSQL for a while); a short one again, with resolutions racing the joins.
# All below Sentinel's down-after (5 s): no failover.
PAUSES_S = (0.8, 2.5, 0.8)


@dataclass
class Ledger:
    storm_id: int
    acked: int = 0  # occurrences answered 2xx, the opening webhook's included
    members: set[str] = field(default_factory=set)  # fingerprints answered storm_aggregated / opened
    refused: set[str] = field(default_factory=set)  # fingerprints of webhooks answered 503
    resolved: set[str] = field(default_factory=set)

    def record(self, resp: httpx.Response, pods: list[str]) -> None:
        if resp.status_code == 503:
            assert "retry-after" in resp.headers
            self.refused.update(pods)
            return
        assert resp.is_success, resp.text
        for signal_answer in resp.json()["signals"]:
            if signal_answer["outcome"] == "resolved":
                continue
            assert signal_answer["request_id"] == self.storm_id, signal_answer
            self.acked += 1
            if signal_answer["outcome"] in ("storm_aggregated", "storm_opened"):
                self.members.add(signal_answer["fingerprint"])


async def _storm(stack: LocalStack, storm_id: int) -> dict[str, Any]:
    (row,) = await fetch_rows(
        stack,
        "SELECT r.occurrence_count, r.storm_alert_count, r.resolved_at,"
        " ARRAY(SELECT m.fingerprint FROM storm_members m WHERE m.request_id = r.id) AS members"
        " FROM remediation_requests r WHERE r.id = $1",
        storm_id,
    )
    return row


async def _pause_master(stack: LocalStack, pause_s: float) -> None:
    master, node = master_node(stack)
    assert stack.signal_component(node, signal.SIGSTOP)
    try:
        await asyncio.sleep(pause_s)  # the fault's own length
    finally:
        stack.signal_component(node, signal.SIGCONT)
    assert stack.current_master() == master, "the pause must stay below Sentinel's down-after"


@pytest.mark.parametrize("seed", SEEDS)
async def test_storm_joins_under_master_hangs_are_exact(stack: LocalStack, seed: int) -> None:
    rng = random.Random(seed)
    prefix, namespace, name = f"gwj:{uuid.uuid4().hex[:8]}:", f"joins-{uuid.uuid4().hex[:8]}", "Joins"
    pods = (f"m{i}" for i in itertools.count())
    pod_of: dict[str, str] = {}  # fingerprint -> pod

    def fp(pod: str) -> str:
        pod_of[key := fingerprint(name, namespace, "Pod", pod)] = pod
        return key

    env = {"key_prefix": prefix, "rate_limit__mode": "off", "http__workers": "1"}
    with gateway_process(stack, f"gateway-joins-{seed}", free_port(), **env) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

            async def post(batch: list[str], status: str = "firing") -> httpx.Response:
                body = webhook(*(alert(name, pod=p, namespace=namespace, status=status) for p in batch))
                return await client.post(PROMETHEUS, json=body)

            opening = [next(pods) for _ in range(6)]  # 5 requests, then a pattern storm
            first = await post(opening)
            assert first.status_code == 201, first.text
            assert [fp(p) for p in opening] == [s["fingerprint"] for s in first.json()["signals"]]
            opened = first.json()["signals"][5]
            ledger = Ledger(opened["request_id"], acked=1, members={opened["fingerprint"]})
            await until_storm_bound(stack, prefix, name, namespace, ledger.storm_id)
            repeatable: set[str] = set()  # members the senders may repeat (never one to be resolved)

            async def sender(stop: asyncio.Event, local: random.Random) -> None:
                while not stop.is_set():
                    batch = [next(pods) for _ in range(local.randint(1, 4))]
                    batch += local.sample(sorted(repeatable), min(len(repeatable), local.randint(0, 2)))
                    resp = await post(batch)
                    ledger.record(resp, [fp(p) for p in batch])
                    if resp.is_success:
                        repeatable.update(p for p in batch if fp(p) in ledger.members)

            for round_no, pause_s in enumerate(PAUSES_S):
                if round_no == len(PAUSES_S) - 1:  # resolutions race the joins: half the members so far
                    half = sorted(ledger.members)[::2]
                    repeatable.difference_update(pod_of[f] for f in half)
                stop = asyncio.Event()
                senders = [
                    asyncio.create_task(sender(stop, random.Random(rng.random()))) for _ in range(SENDERS)
                ]
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                if round_no == len(PAUSES_S) - 1:
                    resp = await post([pod_of[f] for f in half], "resolved")
                    if resp.is_success:
                        ledger.resolved.update(half)
                await _pause_master(stack, pause_s)
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                stop.set()
                await asyncio.gather(*senders)
            await until_flushed(stack, prefix, within_s=60)
            storm = await _storm(stack, ledger.storm_id)
            stored = set(storm["members"])
            # Every member answered for is stored; none whose webhooks were all refused is.
            assert ledger.members <= stored
            assert not (stored - ledger.members), "a member stored that no answer took in"
            assert storm["storm_alert_count"] == len(stored)
            assert storm["occurrence_count"] == ledger.acked
            assert ledger.refused - ledger.members, "no new member was only refused: the fault missed"
            # Refused calls the hung master ran when it resumed, their joins taken back by their voids.
            voided = metric(
                (await client.get("/metrics")).text, "gateway_redis_voids_total", result="took_back"
            )
            assert voided > 0
            firing = ledger.members - ledger.resolved
            assert (storm["resolved_at"] is None) == bool(firing)

            # The rest resolves (retried while refused): the storm closes with its last member.
            rest = sorted(pod_of[f] for f in firing)
            for k in range(0, len(rest), 500):
                deadline = time.monotonic() + 60
                while (resp := await post(rest[k : k + 500], "resolved")).status_code == 503:
                    assert time.monotonic() < deadline, resp.text
                    await asyncio.sleep(0.2)
                assert resp.is_success, resp.text
    assert (await _storm(stack, ledger.storm_id))["resolved_at"] is not None
