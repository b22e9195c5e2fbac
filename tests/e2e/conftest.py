"""The whole path on real processes: signal source -> Prometheus (rules) -> Alertmanager -> gateway ->
PostgreSQL -> Context-API, all started by the local-stack code.

The Context-API caches answers (L1 Redis, L2 in-process) and the gateway's writes do not invalidate them,
so a test polling one query could read an answer older than what it waits for. This Context-API runs
with cache TTLs of 1 s (L1) and 0.5 s (L2) and an L1 key prefix of its own, set through its settings
(environment overrides), so every answer a test acts on is at most about a second old and a poll
converges on PostgreSQL's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.signal_source import Signal

from .helpers import stop_alerting_cleanly

CACHE_TTL_ENV = {"KUBERNAUT_CONTEXT_API__L1__TTL_S": "1", "KUBERNAUT_CONTEXT_API__L2__TTL_S": "0.5"}


@pytest.fixture(scope="module")
def services(stack: LocalStack) -> Iterator[LocalStack]:
    """The gateway and a Context-API with short cache TTLs; afterwards, the services as they were."""
    started_gateway = stack.record("gateway") is None
    stack.start_service("gateway", timeout=60)
    context_api_was_running = stack.record("context-api") is not None
    stack.stop_component("context-api")
    with pytest.MonkeyPatch.context() as env:
        for name, value in CACHE_TTL_ENV.items():
            env.setenv(name, value)
        # An L1 key space of its own: nothing cached by an earlier Context-API (TTL 300 s) is read here.
        env.setenv("KUBERNAUT_CONTEXT_API__KEY_PREFIX", f"ctx-e2e-{uuid.uuid4().hex[:8]}:")
        stack.start_service("context-api", timeout=60)
    yield stack
    stack.stop_component("context-api")
    if context_api_was_running:
        stack.start_service("context-api", timeout=60)
    if started_gateway:
        stack.stop_component("gateway")


@pytest.fixture(scope="module")
def alerting_stack(services: LocalStack) -> Iterator[LocalStack]:
    """The services plus Prometheus, Alertmanager and the signal source, no alert firing at first."""
    services.set_signals([])
    services.start_alerting()
    yield services
    stop_alerting_cleanly(services)


class Alerts:
    """The signal source's series of one test; each set makes its alerts fire or resolve (~2 s)."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self._series: dict[tuple[str, str, str], Signal] = {}

    def set(self, *signals: Signal) -> None:
        for s in signals:
            self._series[(s.scenario, s.namespace, s.pod)] = s
        self._stack.set_signals(list(self._series.values()))

    def clear(self) -> None:
        self._series.clear()
        self._stack.set_signals([])


@pytest.fixture
def alerts(alerting_stack: LocalStack) -> Iterator[Alerts]:
    """Series a test sets; removed afterwards (their alerts resolve while the next test runs)."""
    board = Alerts(alerting_stack)
    yield board
    board.clear()
