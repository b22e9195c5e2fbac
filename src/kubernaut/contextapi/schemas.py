"""The shapes of the Context-API's answers, as pydantic models: the OpenAPI document describes them, and
the schemathesis suite checks every live answer against them (queries.py builds the JSON)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

from kubernaut.contextapi.params import Phase


class Resource(BaseModel):
    """The Kubernetes object an incident is about."""

    kind: str
    name: str


class Storm(BaseModel):
    """The storm an aggregated incident stands for: its type, size and window."""

    type: Literal["rate", "pattern"] | None
    alert_count: int
    affected_resources: list[str]
    affected_overflow: int
    window_start: dt.datetime | None
    window_end: dt.datetime | None


class Outcome(BaseModel):
    """The remediation outcome recorded for an incident."""

    action: str
    succeeded: bool
    detail: str
    recorded_at: dt.datetime


class Incident(BaseModel):
    """One RemediationRequest with its outcome, if one was recorded."""

    id: int
    fingerprint: str
    alertname: str
    signal_type: Literal["prometheus", "kubernetes-event"]
    source: str
    severity: str
    namespace: str
    resource: Resource
    environment: str
    priority: str
    labels: dict[str, Any]
    annotations: dict[str, Any]
    phase: Phase
    first_seen: dt.datetime
    last_seen: dt.datetime
    occurrence_count: int
    resolved_at: dt.datetime | None
    storm: Storm | None
    outcome: Outcome | None
    created_at: dt.datetime
    updated_at: dt.datetime


class IncidentPage(BaseModel):
    """Newest first (first_seen, then id)."""

    incidents: list[Incident]
    total: int
    limit: int
    offset: int


class ActionRate(BaseModel):
    """Outcome counts of one remediation action."""

    action: str
    total: int
    succeeded: int
    failed: int
    success_rate: float | None


class SuccessRate(BaseModel):
    """The answer of ``GET /api/v1/aggregations/success-rate``: outcomes overall and per action."""

    total: int
    succeeded: int
    failed: int
    success_rate: float | None
    by_action: list[ActionRate]
    filters: dict[str, Any]


class GroupCounts(BaseModel):
    """Incident and outcome counts of one group (a namespace or a severity)."""

    incidents: int
    open: int
    succeeded: int
    failed: int
    success_rate: float | None


class NamespaceCounts(GroupCounts):
    namespace: str


class SeverityCounts(GroupCounts):
    severity: str


class NamespaceBreakdown(BaseModel):
    """The answer of ``GET /api/v1/aggregations/namespaces``."""

    namespaces: list[NamespaceCounts]
    filters: dict[str, Any]


class SeverityBreakdown(BaseModel):
    """The answer of ``GET /api/v1/aggregations/severity``."""

    severities: list[SeverityCounts]
    filters: dict[str, Any]


class TrendPoint(BaseModel):
    """One UTC day of the trend."""

    date: dt.date
    incidents: int
    succeeded: int
    failed: int


class Trend(BaseModel):
    """The answer of ``GET /api/v1/aggregations/trend``."""

    days: int
    points: list[TrendPoint]
    filters: dict[str, Any]


class Health(BaseModel):
    """The answer of ``GET /healthz``: liveness with the L1, breaker and notification state."""

    status: Literal["ok"]
    l1: Literal["available", "unavailable", "disabled"]
    breaker: str | None = None
    notifications: Literal["listening", "reconnecting"]


class Ready(BaseModel):
    """The answer of ``GET /readyz`` when the replica is ready."""

    status: Literal["ready"]
