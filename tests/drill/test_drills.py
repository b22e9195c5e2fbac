"""The seed's HA promise, proven: every failure scenario under a steady alert load, on the real stack.

Each scenario kills or freezes real processes by PID, waits on real state, heals the stack, and then
checks PostgreSQL for every alert the gateway acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubernaut_tools.drill.faults import SCENARIOS
from kubernaut_tools.drill.runner import run_drill
from kubernaut_tools.localstack import LocalStack

pytestmark = pytest.mark.ha

# Generous bounds on properties, not timings of this machine: the seed promises failover under 10 s.
FAILOVER_BOUND_S = 30.0
BLACKOUT_MARGIN_S = 5.0
UNDISTURBED = {"replica-down", "context-redis-kill"}  # the gateway must not notice these at all


@pytest.fixture(scope="module")
def live_stack(stack: LocalStack) -> Iterator[LocalStack]:
    stack.start_service("gateway")
    stack.start_service("context-api")
    yield stack
    for service in ("gateway", "context-api"):
        stack.stop_component(service)


@pytest.mark.parametrize("scenario", [n for n, s in SCENARIOS.items() if s.postgres != "ha"])
async def test_scenario_keeps_the_invariants(live_stack: LocalStack, scenario: str) -> None:
    report = await run_drill(live_stack, scenario)

    assert report.accepted > 0
    assert report.lost == 0, "an acknowledged alert has no RemediationRequest"
    assert report.duplicate_open_requests == 0
    assert report.other_errors == 0, "every refusal must be 503/429 with Retry-After"
    assert report.context_api_errors == 0, "the Context-API must answer throughout"
    assert all(report.checks.values()), report.checks
    # No single fault loses an acknowledged count (issue 12 item 4; drift is accepted minus counted). A
    # negative drift is a refused webhook counted anyway (item 3, the ledger's). Only every node of the
    # group dying at once may lose counts (docs/gateway.md states the bound).
    if scenario != "all-redis-down":
        assert report.count_drift <= 0, report.count_drift
    if scenario in UNDISTURBED:
        assert report.availability == 1.0
        assert report.gateway_blackout_s == 0.0
    if report.sentinel_failover_s is not None:
        assert report.sentinel_failover_s < FAILOVER_BOUND_S
        assert report.gateway_blackout_s <= report.sentinel_failover_s + BLACKOUT_MARGIN_S

    # Healed: the group is whole and both services answer /readyz, with nothing restarted by hand.
    assert live_stack.group_ready()
    live_stack.wait_service_ready("gateway", timeout=30)
    live_stack.wait_service_ready("context-api", timeout=30)
