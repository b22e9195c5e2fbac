"""Duplicate counts under faults that hit the count take/ack path (issue 12 items 2 and 8): real gateway
processes on the real Redis group, faults by PID, PostgreSQL audited against every answer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import ProcessRecord, signal_process, spawn, stop, wait_until
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    connect_db,
    gateway_process,
    master_node,
    pending_count_keys,
    ready,
    until_flushed,
    wait_bound,
    webhook,
)
from tests.ports import free_port

pytestmark = pytest.mark.ha

ALERTS = 10
# The next take is sent about 0.5 s into the pause and times out 1.5 s later (connect_s + socket_s): the
# pause outlasts that with a second to spare, and stays below Sentinel's down-after (5 s): no failover.
PAUSE_S = 3.0


@pytest.fixture
def prefix() -> str:
    return f"gwc:{uuid.uuid4().hex[:8]}:"


def _env(prefix: str) -> dict[str, str]:
    # One worker: these tests time one flusher's cycle and kill one gateway process by its PID.
    return {"key_prefix": prefix, "rate_limit__mode": "off", "http__workers": "1"}


async def _counted(stack: LocalStack, namespace: str) -> dict[str, int]:
    db = await connect_db(stack)
    try:
        rows = await db.fetch(
            "SELECT signal_name, sum(occurrence_count) AS n FROM remediation_requests"
            " WHERE namespace = $1 GROUP BY signal_name",
            namespace,
        )
        return {r["signal_name"]: int(r["n"]) for r in rows}
    finally:
        await db.close()


class Ledger:
    """What the gateway answered, per alert name: occurrences acknowledged and refused."""

    def __init__(self) -> None:
        self.acked: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    async def open_bound(
        self, client: httpx.AsyncClient, stack: LocalStack, prefix: str, names: list[str], namespace: str
    ) -> list[str]:
        """One webhook opening a request for each of ``names`` (201); waits until Redis has bound each (so
        that a repeat is counted there) and returns the request ids."""
        first = await client.post(PROMETHEUS, json=webhook(*(alert(n, namespace=namespace) for n in names)))
        assert first.status_code == 201, first.text
        self.acked.update(names)
        for signal_answer in first.json()["signals"]:
            await wait_bound(stack, signal_answer["fingerprint"], prefix)
        return [str(s["request_id"]) for s in first.json()["signals"]]

    async def post(self, client: httpx.AsyncClient, names: list[str], namespace: str) -> int:
        body = webhook(*(alert(n, namespace=namespace) for n in names))
        try:
            resp = await client.post(PROMETHEUS, json=body)
        except httpx.HTTPError:
            raise AssertionError("the gateway must answer (503 at worst) within the client timeout") from None
        if resp.is_success:
            self.acked.update(names)
        else:
            assert resp.status_code == 503, resp.text
            assert "retry-after" in resp.headers
            self.refused.update(names)
        return resp.status_code


async def _flusher_seen(stack: LocalStack, prefix: str) -> float:
    """When the (only) gateway on ``prefix`` last ran a count take (its score in ``flushers``, ms)."""
    master = stack.current_master()
    assert master is not None
    r = aioredis.Redis(**stack.redis_auth(master[1]))
    try:
        members = await r.zrange(f"{prefix}flushers", 0, -1, withscores=True)
    finally:
        await r.aclose()
    assert len(members) <= 1, members
    return float(members[0][1]) if members else 0.0


async def _next_take(stack: LocalStack, prefix: str) -> float:
    """Wait until the gateway's flusher runs its next count take; return its time (ms)."""
    seen = await _flusher_seen(stack, prefix)
    deadline = time.monotonic() + 30
    while True:
        now = await _flusher_seen(stack, prefix)
        if now != seen:
            return now
        assert time.monotonic() < deadline, "no count take within 30 s"
        await asyncio.sleep(0.01)


async def test_a_master_hang_loses_no_acknowledged_count(stack: LocalStack, prefix: str) -> None:
    """Item 2: a count take sent into a hung master times out, yet runs when the master resumes; the
    acknowledgement that follows must not delete the batch that take moved aside unflushed.

    The hang is placed on the flusher's cycle: it starts half a flush interval after a take ran, so
    the next take is sent into it and its reply is lost (PAUSE_S); no webhook is in flight meanwhile
    (their timeouts would delay the take into the next round trip). Counts are then exact."""
    namespace = f"hang-{uuid.uuid4().hex[:8]}"
    names = [f"Hang{i}" for i in range(ALERTS)]
    ledger = Ledger()
    with gateway_process(stack, "gateway-hang", free_port(), **_env(prefix)) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            assert await ledger.post(client, names, namespace) == 201
            for _ in range(10):
                assert await ledger.post(client, names, namespace) == 202
            master, node = master_node(stack)
            await _next_take(stack, prefix)  # the flusher is running
            for _attempt in range(5):
                now = await _next_take(stack, prefix)
                took_at = time.monotonic()  # a take just ran: what follows waits for the next one
                for _ in range(10):
                    assert await ledger.post(client, names, namespace) == 202
                # The load lands between two takes and the hang starts before the next: else again.
                if await _flusher_seen(stack, prefix) == now and time.monotonic() < took_at + 0.5:
                    break
            else:
                raise AssertionError("the load never landed within half a flush interval of a take")
            await asyncio.sleep(took_at + 0.5 - time.monotonic())
            assert stack.signal_component(node, signal.SIGSTOP)
            try:
                await asyncio.sleep(PAUSE_S)  # the fault's own length
            finally:
                stack.signal_component(node, signal.SIGCONT)
            for _ in range(10):
                assert await ledger.post(client, names, namespace) == 202
        assert stack.current_master() == master, "the hang must stay below Sentinel's down-after"
        await until_flushed(stack, prefix, within_s=30)
    assert await _counted(stack, namespace) == dict(ledger.acked)


@pytest.fixture
def second_gateway(stack: LocalStack, prefix: str) -> Iterator[tuple[ProcessRecord, str]]:
    """A gateway process this test kills with SIGKILL (by its PID); stopped at the end if still alive."""
    port = free_port()
    env = {**os.environ, "KUBERNAUT_GATEWAY__HTTP__PORT": str(port)}
    env.update({f"KUBERNAUT_GATEWAY__{k.upper()}": v for k, v in _env(prefix).items()})
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    record = spawn(
        "gateway-victim", argv, marker="-m kubernaut gateway", log=stack.run.log("gateway-victim"), env=env
    )
    url = f"http://{stack.topology.host}:{port}"
    try:
        wait_until(lambda: ready(url), timeout=30, interval=0.1, what="gateway-victim ready")
        yield record, url
    finally:
        stop(record, sig=signal.SIGKILL)


async def test_a_gateway_killed_right_after_its_flush_counts_nothing_twice(
    stack: LocalStack, prefix: str, second_gateway: tuple[ProcessRecord, str]
) -> None:
    """Item 8: the killed instance's batch, already in PostgreSQL but not acknowledged in Redis, is
    adopted by the surviving gateway after the stale interval; it must not be added again."""
    victim, victim_url = second_gateway
    namespace = f"kill-{uuid.uuid4().hex[:8]}"
    names = [f"Kill{i}" for i in range(ALERTS)]
    ledger = Ledger()
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    with gateway_process(stack, "gateway-survivor", free_port(), **_env(prefix)) as survivor_url:
        async with httpx.AsyncClient(base_url=survivor_url, headers=headers, timeout=30) as survivor:
            assert await ledger.post(survivor, names, namespace) == 201
        await until_flushed(stack, prefix, within_s=30)
        async with httpx.AsyncClient(base_url=victim_url, headers=headers, timeout=30) as client:
            for _attempt in range(5):
                for _ in range(20):
                    assert await ledger.post(client, names, namespace) == 202
                expected = {name: ledger.acked[name] for name in names}
                # The victim's flush reached PostgreSQL: freeze it at once, then kill it if its batch is
                # still unacknowledged in Redis (else the window was missed on a slow machine: again).
                deadline = time.monotonic() + 30
                while await _counted(stack, namespace) != expected:
                    assert time.monotonic() < deadline, "the victim never flushed"
                    await asyncio.sleep(0.01)
                assert signal_process(victim, signal.SIGSTOP)
                if await pending_count_keys(stack, prefix):
                    break
                assert signal_process(victim, signal.SIGCONT)
            else:
                raise AssertionError("never caught the victim between its flush and its next take")
        stop(victim, sig=signal.SIGKILL)
        # The survivor adopts the dead instance's batch once it has been silent for 30 s.
        await until_flushed(stack, prefix, within_s=60)
    assert await _counted(stack, namespace) == expected


async def test_no_count_is_acknowledged_before_a_replica_has_it(stack: LocalStack, prefix: str) -> None:
    """Item 4: a count acknowledged while only the master holds it is lost when the master dies and a
    replica is promoted. With both replicas frozen no replica can take the writes, so the gateway must
    refuse (503 + Retry-After), not acknowledge; after the master is killed and a replica promoted,
    every acknowledged count is in PostgreSQL.

    (On loopback a frozen replica still gets the stream into its socket buffer and applies it when it
    wakes, so refused webhooks can count here: the ledger's item 3, bounded below.)"""
    namespace = f"unrepl-{uuid.uuid4().hex[:8]}"
    names = [f"Unrepl{i}" for i in range(ALERTS)]
    ledger = Ledger()
    master, old = master_node(stack)
    replicas = [n.name for n in stack.nodes() if n.port != master[1]]
    with gateway_process(stack, "gateway-unrepl", free_port(), **_env(prefix)) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            assert await ledger.post(client, names, namespace) == 201
            await until_flushed(stack, prefix, within_s=30)
            for name in replicas:
                assert stack.signal_component(name, signal.SIGSTOP)
            try:
                frozen = [await ledger.post(client, names, namespace) for _ in range(5)]
                stack.stop_component(old, sig=signal.SIGKILL)
            finally:
                for name in replicas:
                    stack.signal_component(name, signal.SIGCONT)
            assert frozen == [503] * 5
            await asyncio.to_thread(stack.wait_for_new_master, master, 60)
            await asyncio.to_thread(stack.up, services=False, timeout=90)
            for _ in range(5):
                assert await ledger.post(client, names, namespace) == 202
        await until_flushed(stack, prefix, within_s=30)
    counted = await _counted(stack, namespace)
    for name in names:
        assert ledger.acked[name] <= counted[name] <= ledger.acked[name] + ledger.refused[name]


async def test_after_a_failed_call_duplicates_are_counted_with_a_commit(
    stack: LocalStack, prefix: str
) -> None:
    """A master that hung past Sentinel's down-after and resumes before its replacement is announced
    takes writes that the switch then discards, WAIT satisfied by a replica about to be re-pointed
    (seen in `drill chaos`: every such failover lost about a second of acknowledged counts). So after
    any failed Redis call a gateway counts duplicates in PostgreSQL, with the webhook's commit, for a
    while: here they are in PostgreSQL at once, although no count flush runs (the interval is an hour).
    Nor does it take counts from Redis meanwhile, not even at shutdown: the one count held there waits
    for the next gateway, which flushes it."""
    namespace = f"doubt-{uuid.uuid4().hex[:8]}"
    names = [f"Doubt{i}" for i in range(ALERTS)]
    ledger = Ledger()
    env = {**_env(prefix), "count_flush_interval_s": "3600"}
    with gateway_process(stack, "gateway-doubt", free_port(), **env) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            await ledger.open_bound(client, stack, prefix, names, namespace)
            assert await ledger.post(client, names, namespace) == 202
            assert await _counted(stack, namespace) == dict.fromkeys(names, 1)  # counted in Redis
            master, node = master_node(stack)
            assert stack.signal_component(node, signal.SIGSTOP)
            try:
                assert await ledger.post(client, names, namespace) == 503  # longer than the call timeout
            finally:
                stack.signal_component(node, signal.SIGCONT)
            assert stack.current_master() == master
            for _ in range(3):
                assert await ledger.post(client, names, namespace) == 202
            assert await _counted(stack, namespace) == dict.fromkeys(names, 1 + 3)
    assert await _counted(stack, namespace) == dict.fromkeys(names, 1 + 3)  # the shutdown held it back
    assert await pending_count_keys(stack, prefix)
    with gateway_process(stack, "gateway-doubt-next", free_port(), **_env(prefix)):
        await until_flushed(stack, prefix, within_s=30)
    assert await _counted(stack, namespace) == dict(ledger.acked)


# How long the test watches a gateway in doubt not take counts: dozens of its flush intervals, well
# inside its doubt (15 s after the master's last failure).
HELD_FOR_S = 3.0


async def test_no_count_is_taken_from_a_master_in_doubt(stack: LocalStack, prefix: str) -> None:
    """A master that hung past Sentinel's down-after and resumes before the switch runs what was sent
    into it: a refused counting call whose void it runs later, and meanwhile a flusher's take would move
    the call's counts to PostgreSQL, while the void lands in a hash the switch discards (seen in `drill
    chaos`: one refused webhook of three alerts counted, +3). So a gateway whose calls failed takes no
    count until its doubt has passed. Here the counts such a master holds are written into its hash after a
    hang: nothing reaches PostgreSQL while the gateway doubts it; once they are gone (the switch) and the
    doubt has passed, exactly the acknowledged counts are in PostgreSQL."""
    namespace = f"held-{uuid.uuid4().hex[:8]}"
    names = [f"Held{i}" for i in range(ALERTS)]
    ledger = Ledger()
    env = {**_env(prefix), "count_flush_interval_s": "0.1"}
    with gateway_process(stack, "gateway-held", free_port(), **env) as url:
        headers = {"Authorization": f"Bearer {stack.gateway_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            ids = await ledger.open_bound(client, stack, prefix, names, namespace)
            assert await ledger.post(client, names, namespace) == 202
            await until_flushed(stack, prefix, within_s=30)
            assert await _counted(stack, namespace) == dict.fromkeys(names, 2)
            master, node = master_node(stack)
            assert stack.signal_component(node, signal.SIGSTOP)
            try:
                assert await ledger.post(client, names, namespace) == 503  # longer than the call timeout
            finally:
                stack.signal_component(node, signal.SIGCONT)
            doomed = aioredis.Redis(**stack.redis_auth(master[1]))
            try:
                for request_id in ids:
                    await doomed.hincrby(f"{prefix}counts", request_id, 5)
                watched_until = time.monotonic() + HELD_FOR_S
                while time.monotonic() < watched_until:
                    assert await _counted(stack, namespace) == dict.fromkeys(names, 2)
                    assert await doomed.exists(f"{prefix}counts")
                    await asyncio.sleep(0.1)
                for request_id in ids:
                    await doomed.hincrby(f"{prefix}counts", request_id, -5)
            finally:
                await doomed.aclose()
            assert stack.current_master() == master
            await until_flushed(stack, prefix, within_s=30)
    assert await _counted(stack, namespace) == dict(ledger.acked)


async def test_a_call_refused_by_a_gateway_gone_since_is_voided_by_another(
    stack: LocalStack, prefix: str
) -> None:
    """A counting call refused while the master hung (503) may run when it resumes; the gateway that
    refused it voids it, unless it is gone first (killed, or stopped by a rolling update) with the void
    undelivered. So the refusal is recorded in PostgreSQL before the 503, and every gateway instance voids
    the refused calls of the others. Here a real refusal is recorded before its answer; then the state a
    gone instance leaves is written (its refusal, and what its call counted on the master, never voided):
    the live gateway voids it, and exactly the acknowledged counts reach PostgreSQL."""
    namespace = f"gone-{uuid.uuid4().hex[:8]}"
    names = [f"Gone{i}" for i in range(ALERTS)]
    ledger = Ledger()
    db = await connect_db(stack)
    try:
        with gateway_process(stack, "gateway-heir", free_port(), **_env(prefix)) as url:
            headers = {"Authorization": f"Bearer {stack.gateway_token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                ids = await ledger.open_bound(client, stack, prefix, names, namespace)
                assert await ledger.post(client, names, namespace) == 202
                master, node = master_node(stack)
                refusals = "SELECT count(*) FROM refused_calls WHERE key_prefix = $1"
                assert await db.fetchval(refusals, prefix) == 0
                assert stack.signal_component(node, signal.SIGSTOP)
                try:
                    assert await ledger.post(client, names, namespace) == 503
                    assert await db.fetchval(refusals, prefix) == 1  # recorded before the answer
                finally:
                    stack.signal_component(node, signal.SIGCONT)

                gone = uuid.uuid4().hex[:16]
                r = aioredis.Redis(**stack.redis_auth(master[1]))
                try:
                    await db.execute(
                        "INSERT INTO refused_calls (nonce, key_prefix) VALUES ($1, $2)", gone, prefix
                    )
                    await r.set(f"{prefix}ran:{gone}", ",".join(ids), ex=60)
                    for request_id in ids:
                        await r.hincrby(f"{prefix}counts", request_id, 1)
                    deadline = time.monotonic() + 30
                    while await r.get(f"{prefix}ran:{gone}") != b"void":  # taken back
                        assert time.monotonic() < deadline, "the gone instance's call was not voided"
                        await asyncio.sleep(0.1)
                finally:
                    await r.aclose()
            await until_flushed(stack, prefix, within_s=30)
    finally:
        await db.close()
    assert await _counted(stack, namespace) == dict(ledger.acked)
