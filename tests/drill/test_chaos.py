"""A short seeded `kubernaut drill chaos` run on the test stack: every fault kind the schedule can draw
against the gateway under load, then the history audited against PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubernaut_tools.drill.chaos import run_chaos
from kubernaut_tools.drill.chaos_schedule import schedule
from kubernaut_tools.localstack import LocalStack

pytestmark = pytest.mark.ha

# Seed 53 over 75 s draws master pauses below and above socket_s, gateway-master partitions (one longer
# than Sentinel's down-after), gateway kills, a PostgreSQL restart and a master kill.
SEED, DURATION_S = 53, 75.0
ITEM_3 = "refused webhooks were counted (issue 12 item 3)"


@pytest.fixture
def proxied_stack(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack with its gateway behind the chaos proxies; as before afterwards."""
    was_running = [name for name in ("gateway", "context-api") if stack.record(name) is not None]
    stack.stop_component("gateway")
    stack.up(chaos_proxy=True, timeout=90)  # also starts the services
    try:
        yield stack
    finally:
        stack.stop_component("gateway")
        stack.stop_component("context-api")
        stack.remove_chaos_proxy()
        for name in was_running:
            stack.start_service(name, timeout=60)


async def test_a_seeded_chaos_run_breaks_no_invariant(proxied_stack: LocalStack) -> None:
    kinds = {f.kind for f in schedule(SEED, DURATION_S)}
    assert {"master-pause", "partition", "gateway-kill", "postgres-restart", "master-kill"} <= kinds

    report = await run_chaos(proxied_stack, SEED, DURATION_S)

    assert report.acknowledged > 0
    assert len(report.faults) == len(schedule(SEED, DURATION_S))
    # Refused webhooks whose Redis script ran anyway (a 503 after a lost reply or a failed PostgreSQL
    # write) still count on this branch: that is the ledger engineer's item 3. Everything else must hold.
    outside = [v for v in report.violations if v.get("likely_cause") == ITEM_3]
    assert [v for v in report.violations if v not in outside] == []
    assert report.lost == 0
    assert report.duplicate_open_requests == 0
    assert report.acks_on_closed_requests == 0
    assert report.other_errors == 0
    assert all(v["drift"] > 0 for v in outside)
    proxied_stack.wait_service_ready("gateway", timeout=30)
