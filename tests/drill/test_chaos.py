"""A short seeded `kubernaut drill chaos` run on the test stack: every fault kind the schedule can draw
against the gateway under load, then the history audited against PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubernaut_tools.drill.chaos import run_chaos
from kubernaut_tools.drill.chaos_schedule import KINDS, schedule
from kubernaut_tools.localstack import LocalStack

pytestmark = pytest.mark.ha

# Seed 53 over 75 s draws master pauses below and above socket_s, gateway-master partitions (one longer
# than Sentinel's down-after), gateway kills, a PostgreSQL restart and a master kill; no fault that takes
# every gateway Redis node at once, so the documented bound allows no count drift at all.
SEED, DURATION_S = 53, 75.0


def test_the_faults_filter_draws_only_the_kinds_asked_for() -> None:
    only = schedule(SEED, DURATION_S, ("partition", "master-pause"))
    assert {f.kind for f in only} == {"partition", "master-pause"}
    assert schedule(SEED, DURATION_S, ("master-pause", "partition")) == only  # order does not matter
    assert schedule(SEED, DURATION_S, KINDS) == schedule(SEED, DURATION_S)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        schedule(SEED, DURATION_S, ("partition", "meteor"))


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
    assert "all-redis-restart" not in kinds
    assert report.violations == []
    assert report.lost == 0
    assert report.duplicate_open_requests == 0
    assert report.acks_on_closed_requests == 0
    assert report.count_drift == {"sum": 0, "max_abs": 0}
    assert report.other_errors == 0
    proxied_stack.wait_service_ready("gateway", timeout=30)
