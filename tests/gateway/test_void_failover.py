"""A refused webhook's void must survive a failover to a replica that got the refused call but not its void
(found by 10-minute chaos runs: a master paused past down-after while a counting call waited for its
`WAIT`; the void ran when it resumed, was acknowledged by a replica still attached to it, and the switch
discarded it). The gateway runs every recent void again on each master it finds.

The gateway runs in the test's event loop, so while the test does blocking work the gateway is paused, as
in the chaos run: meanwhile a real failover promotes a replica and the test gives that replica the state
such a replica holds (the call's count and its `ran:` record, no void). Without the second void the
refused webhook's count stays in PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import wait_until
from kubernaut_tools.localstack.topology import MASTER_NAME
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    in_process,
    isolated,
    metric,
    unique,
    until_flushed,
    wait_bound,
    webhook,
    with_gateway,
)

pytestmark = pytest.mark.ha


@pytest.fixture
def whole_group(stack: LocalStack) -> Iterator[None]:
    """Resume whatever the test stopped, and wait for the group to be whole again."""
    yield
    for node in stack.nodes():
        stack.signal_component(node.name, signal.SIGCONT)
    wait_until(stack.group_ready, timeout=60, what="the gateway's Redis group to heal")


async def _voids(client: httpx.AsyncClient) -> dict[str, float]:
    """``gateway_redis_voids_total`` by result."""
    text = (await client.get("/metrics")).text
    return {
        r: metric(text, "gateway_redis_voids_total", result=r) for r in ("took_back", "nothing", "failed")
    }


async def _until_voids(
    client: httpx.AsyncClient, what: str, *results: str, above: float = 0
) -> dict[str, float]:
    deadline = time.monotonic() + 30
    while True:
        voids = await _voids(client)
        if sum(voids.get(r, 0.0) for r in results) > above:
            return voids
        assert time.monotonic() < deadline, f"{what}: {voids}"
        await asyncio.sleep(0.05)


def _fail_over(stack: LocalStack, old: tuple[str, int]) -> redis.Redis:
    """Blocking (the gateway is paused meanwhile): Sentinel promotes a replica; a client of the new
    master once every sentinel names it and it takes writes."""
    (sentinel, *_) = stack.sentinels()
    with redis.Redis(**stack.redis_auth(sentinel.port)) as s:
        assert s.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    wait_until(
        lambda: (m := stack.current_master()) is not None and m != old and stack.group_ready(),
        timeout=60,
        what="Sentinel to promote a replica",
    )
    new = stack.current_master()
    assert new is not None
    return redis.Redis(**stack.redis_auth(new[1]))


async def test_a_void_discarded_by_a_failover_is_run_again_on_the_new_master(
    stack: LocalStack, whole_group: None
) -> None:
    name = unique("Revoid")
    settings = isolated(stack, rate_limit={"mode": "off"}, count_flush_interval_s=3600)
    prefix = settings.gateway.key_prefix
    master = stack.current_master()
    assert master is not None
    replicas = [n.name for n in stack.nodes() if n.port != master[1]]
    old_master = redis.Redis(**stack.redis_auth(master[1]))
    try:
        async with in_process(settings, stack.gateway_token) as gw:
            created = (await gw.post(PROMETHEUS, json=webhook(alert(name)))).json()["signals"][0]
            await wait_bound(stack, created["fingerprint"], prefix)
            for _ in range(2):
                assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 202

            # No replica acknowledges: the master runs the counting call, the gateway answers 503 and
            # voids it (the void's own WAIT fails too, so it retries until the replicas are back).
            for node in replicas:
                assert stack.signal_component(node, signal.SIGSTOP)
            try:
                refused = await gw.post(PROMETHEUS, json=webhook(alert(name)))
            finally:
                for node in replicas:
                    stack.signal_component(node, signal.SIGCONT)
            assert refused.status_code == 503, refused.text
            voided = await _until_voids(gw, "no void reached a replica", "took_back", "nothing")
            (ran,) = [k for k in old_master.scan_iter(f"{prefix}ran:*") if old_master.get(k) == b"void"]

            with _fail_over(stack, master) as new_master:
                # What a replica that got the refused call but not its void holds.
                new_master.hincrby(f"{prefix}counts", str(created["request_id"]), 1)
                new_master.set(ran, str(created["request_id"]), ex=60)

            await _until_voids(
                gw, "the void did not run again on the new master", "took_back", above=voided["took_back"]
            )
    finally:
        old_master.close()
    # That gateway doubted its master to the end, so it left its counts in Redis; the next one flushes them.
    async with in_process(with_gateway(settings, count_flush_interval_s=0.1), stack.gateway_token):
        await until_flushed(stack, prefix, within_s=30)
    rows = await fetch_rows(
        stack, "SELECT occurrence_count FROM remediation_requests WHERE signal_name = $1", name
    )
    assert [r["occurrence_count"] for r in rows] == [1 + 2]  # created, two repeats; the refused one not
