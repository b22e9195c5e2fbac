# mypy: disable-error-code="comparison-overlap"
# (mypy narrows `b.state` after each assert and cannot see record_failure() change it.)
"""The Redis circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from kubernaut.contextapi.cache.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_failure_stops_use_and_threshold_opens() -> None:
    seen: list[BreakerState] = []
    clock = Clock()
    b = CircuitBreaker(3, 5.0, on_change=seen.append, clock=clock)
    assert b.closed
    b.record_failure()
    assert b.state is BreakerState.HALF_OPEN
    assert b.probe_delay() == 0.0  # probe again at once
    b.record_failure()
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.probe_delay() == 5.0
    assert seen == [BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN]


def test_open_waits_reset_timeout_then_one_probe_decides() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock=clock)
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now += 4.0
    assert b.probe_delay() == 1.0
    clock.now += 1.0
    assert b.probe_delay() == 0.0
    b.begin_probe()
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure()  # a failed probe re-opens for a full period
    assert b.state is BreakerState.OPEN
    assert b.probe_delay() == 5.0
    clock.now += 5.0
    b.begin_probe()
    b.record_success()
    assert b.closed


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(2, 1.0, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.HALF_OPEN  # counted from zero again


def test_trip_opens_regardless_of_count() -> None:
    b = CircuitBreaker(10, 1.0, clock=Clock(), state=BreakerState.HALF_OPEN)
    b.trip()
    assert b.state is BreakerState.OPEN
