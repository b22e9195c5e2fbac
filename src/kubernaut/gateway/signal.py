"""The normalised signal, its fingerprint, and its classification (environment, priority)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

SourceType = Literal["prometheus", "kubernetes-event"]

# Label name -> Kubernetes kind, in the order DESIGN.md picks the resource.
RESOURCE_LABELS: tuple[tuple[str, str], ...] = (
    ("pod", "Pod"),
    ("deployment", "Deployment"),
    ("statefulset", "StatefulSet"),
    ("daemonset", "DaemonSet"),
    ("node", "Node"),
    ("service", "Service"),
)
DEFAULT_NAMESPACE = "default"
UNKNOWN_ENVIRONMENT = "unknown"


def identity_digest(*parts: str) -> str:
    """SHA-256 (hex) of ``parts``, each as ``<UTF-8 byte length>:<bytes>``: injective, unlike a join on a
    separator the parts may contain. Migration 030 computes the same in SQL (kubernaut_identity_digest)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode()
        digest.update(b"%d:%b" % (len(data), data))
    return digest.hexdigest()


# Alertmanager sends the same alerts again and again (every group and repeat interval): a hit costs a
# fifth of a digest. Bounded: about 5 MB at the most.
@functools.lru_cache(maxsize=16384)
def fingerprint(name: str, namespace: str, kind: str, resource_name: str) -> str:
    """The signal identity's digest (name = alertname or event reason)."""
    return identity_digest(name, namespace, kind, resource_name)


@dataclass(slots=True)
class NormalizedSignal:
    """One alert or event as an adapter normalised it: what the pipeline deduplicates and stores. Not
    frozen: one is built per alert, and a frozen dataclass's ``__init__`` costs four times as much."""

    source_type: SourceType
    name: str
    firing: bool
    severity: str
    namespace: str
    resource_kind: str
    resource_name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    fingerprint: str
    starts_at: datetime | None = None  # the alert's own times (Alertmanager startsAt / endsAt)
    ends_at: datetime | None = None

    @property
    def resource(self) -> str:
        """``Kind/name``, or empty when the signal names no resource."""
        return f"{self.resource_kind}/{self.resource_name}" if self.resource_kind else ""


def resource_from_labels(labels: Mapping[str, str]) -> tuple[str, str]:
    for label, kind in RESOURCE_LABELS:
        value = labels.get(label)
        if value:
            return kind, value
    return "", ""


def namespace_from_labels(labels: Mapping[str, str]) -> str:
    return labels.get("namespace") or labels.get("exported_namespace") or DEFAULT_NAMESPACE


def environment(namespace: str, environments: Mapping[str, str]) -> str:
    return environments.get(namespace, UNKNOWN_ENVIRONMENT)


def priority(severity: str, env: str) -> str:
    """DESIGN.md's matrix: critical+production P0; critical+staging or warning+production P1;
    other critical/warning P2; info P3; anything else P2."""
    if severity == "critical":
        if env == "production":
            return "P0"
        return "P1" if env == "staging" else "P2"
    if severity == "warning":
        return "P1" if env == "production" else "P2"
    if severity == "info":
        return "P3"
    return "P2"


class AlertTimes:
    """Which time an alert of one webhook takes (:meth:`believe`), the bounds computed once per webhook."""

    __slots__ = ("earliest", "latest", "received")

    def __init__(self, received: datetime, max_skew_s: int, max_age_s: int) -> None:
        self.received = received
        try:
            self.earliest = received - timedelta(seconds=max_age_s)
        except OverflowError:  # an age beyond the calendar: no time is too old
            self.earliest = datetime.min.replace(tzinfo=UTC)
        try:
            self.latest = received + timedelta(seconds=max_skew_s)
        except OverflowError:
            self.latest = datetime.max.replace(tzinfo=UTC)

    def believe(self, claimed: datetime | None) -> datetime:
        """The alert's own time when sane, else the receipt time. Sane: timezone-aware, at most
        ``max_skew_s`` ahead of the receipt (the sender's clock may run a little ahead) and at most
        ``max_age_s`` before it (Alertmanager's zero time ``0001-01-01`` and other absurd values are not)."""
        if claimed is None or claimed.tzinfo is None:
            return self.received
        return claimed if self.earliest <= claimed <= self.latest else self.received
