"""The gateway's OpenAPI 3.1 document: the adapters' own request models, the pipeline's answer shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from kubernaut.gateway.adapters import alertmanager, kubernetes_event
from kubernaut.gateway.group import RedisGroup
from kubernaut.openapi import Operation, build_spec

TITLE = "Kubernaut Gateway"
VERSION = "1"
SIGNAL_PROBLEMS = (400, 401, 413, 415, 429, 503)


class SignalOutcome(BaseModel):
    """What the gateway did with one signal of a webhook, and the request it landed on."""

    fingerprint: str
    outcome: Literal["created", "duplicate", "storm_opened", "storm_aggregated", "resolved"]
    request_id: int | None


class SignalsAccepted(BaseModel):
    """One entry per signal of the request, in order."""

    signals: list[SignalOutcome]


class AlertmanagerWebhook(alertmanager._Webhook):
    """Alertmanager webhook (version 4); every alert of the batch is processed."""


class KubernetesEvent(kubernetes_event._Event):
    """A core/v1 Event; only `type: Warning` events are signals (others are refused with 400)."""


class Health(BaseModel):
    """The liveness answer (``/healthz``)."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """The readiness answer (``/readyz``): the Redis master and PostgreSQL each reachable."""

    ready: bool
    redis_master: bool
    postgres: bool


ANSWERS = {201: SignalsAccepted, 202: SignalsAccepted}
WEBHOOK_NOTE = "201 when the request created a RemediationRequest, else 202. A 2xx answer is durable."

OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/signals/prometheus",
        "Alertmanager webhook: deduplicate, detect storms, create RemediationRequests",
        ANSWERS,
        SIGNAL_PROBLEMS,
        body=AlertmanagerWebhook,
        secured=True,
        tag="signals",
        description=WEBHOOK_NOTE,
    ),
    Operation(
        "POST",
        "/api/v1/signals/kubernetes-event",
        "A Kubernetes Warning event as a signal",
        ANSWERS,
        SIGNAL_PROBLEMS,
        body=KubernetesEvent,
        secured=True,
        tag="signals",
        description=WEBHOOK_NOTE,
    ),
    Operation("GET", "/healthz", "Liveness", {200: Health}, tag="ops"),
    Operation(
        "GET",
        "/readyz",
        "Ready when the Redis master and PostgreSQL answer",
        {200: Readiness, 503: Readiness},
        tag="ops",
    ),
    Operation(
        "GET",
        "/api/v1/redis-group",
        "The Redis HA group as Sentinel sees it: master, replicas, sentinels, failover epoch",
        {200: RedisGroup},
        (401, 404),
        secured=True,
        tag="ops",
    ),
    Operation("GET", "/metrics", "Prometheus metrics", {200: None}, tag="ops", media_type="text/plain"),
]


def spec() -> dict[str, Any]:
    return build_spec(
        TITLE,
        VERSION,
        "Receives Alertmanager webhooks and Kubernetes Warning events and turns them into deduplicated,"
        " storm-aggregated RemediationRequests. Errors are RFC 7807 problem+json naming the field.",
        OPERATIONS,
    )
