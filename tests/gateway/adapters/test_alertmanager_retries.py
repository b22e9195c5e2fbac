"""Alertmanager's retries after the gateway's 503 land every alert once.

A module of its own: its Alertmanager starts fresh, so the group fired here is the only traffic and every
503 counted is one of its deliveries (the first attempt and Alertmanager's retries).
"""

from __future__ import annotations

import signal

import pytest

from kubernaut_tools.demo.scenario import alert_fingerprint
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import wait_until
from kubernaut_tools.localstack.signal_source import ScenarioSeries
from tests.alerting_helpers import Alerts, ContextApi, metric, unique_namespace

pytestmark = pytest.mark.e2e

WEBHOOK_ROUTE = "/api/v1/signals/prometheus"


def test_alertmanager_retries_after_503_and_the_alerts_land_once(
    alerting_stack: LocalStack, alerts: Alerts
) -> None:
    stack = alerting_stack
    api = ContextApi(stack)
    gateway, alertmanager = stack.url("gateway"), stack.url("alertmanager")

    def refused() -> float:
        return metric(gateway, "gateway_http_requests_total", route=WEBHOOK_ROUTE, status="503")

    def failed_attempts() -> float:
        return metric(alertmanager, "alertmanager_notification_requests_failed_total", integration="webhook")

    refused_before, failed_before = refused(), failed_attempts()
    namespace = unique_namespace("retry")
    group = [ScenarioSeries("steady", namespace, f"pay-{i}") for i in range(2)]

    # PostgreSQL down: the gateway cannot make an alert durable, so it refuses with 503 + Retry-After.
    stack.stop_component("postgres", sig=signal.SIGINT)
    try:
        alerts.set(*group)
        wait_until(
            lambda: refused() >= refused_before + 2 and failed_attempts() >= failed_before + 2,
            timeout=40,
            what="the group's webhook refused twice (a first attempt and a retry), as both sides count it",
        )
    finally:
        stack.up(services=False, timeout=60)  # PostgreSQL again, by the same code as `kubernaut up`
    stack.wait_service_ready("gateway", timeout=30)

    found = api.wait_incidents(
        lambda found: len(found) >= 2,
        timeout=60,
        namespace=namespace,
        what="the retried webhook's requests",
    )
    assert sorted(i["fingerprint"] for i in found) == sorted(alert_fingerprint(s) for s in group)
    assert all(i["resolved_at"] is None for i in found)
    assert len({i["first_seen"] for i in found}) == 1, "one webhook, delivered once"
    for s in group:  # nothing doubled: one request per alert
        answer = api.incidents(fingerprint=alert_fingerprint(s))
        assert answer is not None
        assert answer["total"] == 1
