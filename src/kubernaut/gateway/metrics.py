"""Prometheus metrics (names fixed by the shared contracts), one registry per app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("created", "duplicate", "storm_opened", "storm_aggregated", "resolved")
SOURCE_TYPES = ("prometheus", "kubernetes-event")
REJECTION_REASONS = ("invalid", "nul", "too_long")  # kubernaut.gateway.limits.Rejection.reason
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.signals = Counter(
            "gateway_signals_received",
            "Signals by source and outcome",
            ["source_type", "outcome"],
            registry=r,
        )
        self.signals_rejected = Counter(
            "gateway_signals_rejected",
            "Signals rejected alone (the rest of their request taken, or refused when none was left)",
            ["source_type", "reason"],
            registry=r,
        )
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.redis_available = Gauge(
            "gateway_redis_available", "1 while the Redis master answers", registry=r
        )
        self.redis_master_changes = Counter(
            "gateway_redis_master_changes", "Redis master changes seen", registry=r
        )
        self.redis_errors = Counter("gateway_redis_errors", "Redis operation errors", ["kind"], registry=r)
        self.postgres_errors = Counter("gateway_postgres_errors", "PostgreSQL operation errors", registry=r)
        self.requests_created = Counter(
            "gateway_remediation_requests_created", "RemediationRequests created", ["kind"], registry=r
        )
        self.storms_detected = Counter(
            "gateway_storms_detected", "Storm requests opened", ["storm_type"], registry=r
        )
        self.storm_windows_open = Gauge("gateway_storm_windows_open", "Open storm windows", registry=r)
        self.count_batches = Counter(
            "gateway_count_batches_flushed",
            "Duplicate-count batches flushed to PostgreSQL (already_applied: offered again, added nothing)",
            ["result"],
            registry=r,
        )
        self.alerts_aggregated = Counter(
            "gateway_alerts_aggregated", "Alerts folded into a storm request", registry=r
        )
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests over their source's rate limit", ["mode"], registry=r
        )
        self.alerts_truncated = Counter(
            "gateway_alerts_truncated",
            "Alerts Alertmanager left out of accepted webhooks (truncatedAlerts, its max_alerts)",
            ["receiver", "group_key"],
            registry=r,
        )
        self.auth_failures = Counter(
            "gateway_auth_failures", "Authentication failures", ["reason"], registry=r
        )
        # Pre-bound children keep label lookups off the hot path.
        self.signal_children = {
            (s, o): self.signals.labels(source_type=s, outcome=o) for s in SOURCE_TYPES for o in OUTCOMES
        }
        for s in SOURCE_TYPES:
            for reason in REJECTION_REASONS:
                self.signals_rejected.labels(source_type=s, reason=reason)
        for kind in ("single", "storm"):
            self.requests_created.labels(kind=kind)
        for storm_type in ("rate", "pattern"):
            self.storms_detected.labels(storm_type=storm_type)
        for mode in ("enforce", "shadow"):
            self.rate_limited.labels(mode=mode)
        for result in ("applied", "already_applied"):
            self.count_batches.labels(result=result)
        for reason in ("missing", "invalid", "duplicate"):
            self.auth_failures.labels(reason=reason)
        self.redis_available.set(0)
