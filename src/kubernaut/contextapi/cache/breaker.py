"""The circuit breaker in front of the Context-API's Redis.

Requests use Redis only while the breaker is CLOSED. The first failure moves it to HALF_OPEN: requests stop
using Redis at once and a background prober checks the server again right away. ``failure_threshold``
consecutive failed probes open it; while OPEN the prober waits ``reset_timeout_s`` between probes. A
successful probe closes it. Requests therefore never wait on a dead or hung Redis more than once each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    """Values are those of the ``context_api_breaker_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Keeps requests off the Context-API's Redis from its first failure until a probe succeeds."""

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        *,
        on_change: Callable[[BreakerState], None] = lambda _state: None,
        clock: Callable[[], float] = time.monotonic,
        state: BreakerState = BreakerState.CLOSED,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = state
        on_change(state)

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is BreakerState.CLOSED

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self._on_change(state)

    def record_success(self) -> None:
        self._failures = 0
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self._state is BreakerState.CLOSED:
            self._failures = 0
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self.trip()
        else:
            self._set(BreakerState.HALF_OPEN)

    def trip(self) -> None:
        """Open now, whatever the count (a failed probe past the threshold, or a refused server)."""
        self._opened_at = self._clock()
        self._set(BreakerState.OPEN)

    def probe_delay(self) -> float:
        """Seconds the prober waits before its next probe."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    def begin_probe(self) -> None:
        """The open period is over: probe once (HALF_OPEN)."""
        if self._state is BreakerState.OPEN:
            self._set(BreakerState.HALF_OPEN)
