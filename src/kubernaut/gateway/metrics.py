"""Prometheus metrics (names fixed by the shared contracts), one registry per app instance.

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set before the worker imports
prometheus_client), every process writes its values to files there and ``/metrics`` sums them.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OUTCOMES = ("created", "duplicate", "storm_opened", "storm_aggregated", "resolved")
SOURCE_TYPES = ("prometheus", "kubernetes-event")
REJECTION_REASONS = ("invalid", "nul", "too_long")  # kubernaut.gateway.limits.Rejection.reason
REDIS_ERROR_KINDS = (
    "connection",
    "timeout",
    "master_not_found",
    "readonly",
    "noreplicas",
    "masterdown",
    "loading",
    "tryagain",
    "unreplicated",
    "unanswered",
)
# How late an accepted webhook's counts may reach /metrics (Tally).
TALLY_FLUSH_S = 1.0
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Tally:
    """Updates of accepted webhooks, held in process memory until :meth:`flush` adds them to their metrics
    (every TALLY_FLUSH_S, before this process renders /metrics, and at stop). A multiprocess value's
    update takes a lock, a ``getpid`` and an mmap write, five of them a webhook: about 7 µs of a
    single-alert webhook's 200 (benchmarks/README.md). Refusals are not tallied: they count at once."""

    def __init__(self) -> None:
        self._counts: dict[Counter, float] = {}
        self._observed: dict[Histogram, tuple[list[int], list[float]]] = {}

    def inc(self, child: Counter, amount: float = 1.0) -> None:
        self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, child: Histogram, value: float) -> None:
        held = self._observed.get(child)
        if held is None:
            held = self._observed[child] = ([0] * len(child._upper_bounds), [0.0])
        held[0][bisect.bisect_left(child._upper_bounds, value)] += 1  # its bucket: the first bound >= value
        held[1][0] += value

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        # Histogram.observe, once per bucket: its sum, and each bucket's count (the last bound is +Inf),
        # through prometheus-client's own values (internals: test_metrics_tally.py holds the result equal).
        for histogram, (buckets, total) in observed.items():
            histogram._sum.inc(total[0])
            for bucket, n in zip(histogram._buckets, buckets, strict=True):
                if n:
                    bucket.inc(n)


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of its own per app instance."""

    def __init__(self) -> None:
        self.tally = Tally()
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
        # Every live worker must reach the master for the service to: the least of them.
        self.redis_available = Gauge(
            "gateway_redis_available",
            "1 while the Redis master answers",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.redis_master_changes = Counter(
            "gateway_redis_master_changes", "Redis master changes seen", registry=r
        )
        self.redis_errors = Counter("gateway_redis_errors", "Redis operation errors", ["kind"], registry=r)
        self.voids = Counter(
            "gateway_redis_voids",
            "Runs of the void of a refused webhook's Redis call, again on each new master (took_back: it had"
            " counted there; nothing: it had not, or was void already; failed: no master in time)",
            ["result"],
            registry=r,
        )
        self.postgres_errors = Counter("gateway_postgres_errors", "PostgreSQL operation errors", registry=r)
        self.requests_created = Counter(
            "gateway_remediation_requests_created", "RemediationRequests created", ["kind"], registry=r
        )
        self.storms_detected = Counter(
            "gateway_storms_detected", "Storm requests opened", ["storm_type"], registry=r
        )
        # A count read from Redis by whichever worker flushed last.
        self.storm_windows_open = Gauge(
            "gateway_storm_windows_open", "Open storm windows", registry=r, multiprocess_mode="livemostrecent"
        )
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
        self.requests_created_single = self.requests_created.labels(kind="single")
        self.requests_created.labels(kind="storm")
        for storm_type in ("rate", "pattern"):
            self.storms_detected.labels(storm_type=storm_type)
        self.rate_limited_children = {
            mode: self.rate_limited.labels(mode=mode) for mode in ("enforce", "shadow")
        }
        for result in ("applied", "already_applied"):
            self.count_batches.labels(result=result)
        for result in ("took_back", "nothing", "failed"):
            self.voids.labels(result=result)
        for reason in ("missing", "invalid", "duplicate"):
            self.auth_failures.labels(reason=reason)
        # Zero series from the start: the merged multiprocess view lists only series with a value.
        for kind in REDIS_ERROR_KINDS:
            self.redis_errors.labels(kind=kind)
        self.redis_available.set(0)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or every worker's when multiprocess (each adds its
        tally every TALLY_FLUSH_S; this one's now)."""
        self.tally.flush()
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def forget_dead_workers(directory: str) -> None:
    """Drop the live-gauge files of worker processes that no longer exist (killed, not stopped)."""
    pids = {path.stem.rsplit("_", 1)[-1] for path in Path(directory).glob("gauge_live*_*.db")}
    for pid in pids:
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def release_worker() -> None:
    """At a worker's exit: its live gauges leave the merged view."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
