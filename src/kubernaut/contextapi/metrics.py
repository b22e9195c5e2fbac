"""The Context-API's Prometheus metrics (names fixed by the project's contracts).

Each app instance owns its registry, so two replicas in one process report separately.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kubernaut.contextapi.cache.breaker import BreakerState


class Origin(StrEnum):
    """Who reported a change: the ``origin`` label of context_api_invalidations_total."""

    LOCAL = "local"  # this replica recorded it
    REMOTE = "remote"  # another replica did, through Redis pub/sub
    POSTGRES = "postgres"  # PostgreSQL announced it (e.g. a request the gateway wrote)


class ContextApiMetrics:
    """The Context-API's Prometheus metrics, in a registry of its own per app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "context_api_requests_total", "HTTP requests answered.", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "context_api_request_duration_seconds", "HTTP request latency.", ["route"], registry=r
        )
        self.cache_hits = Counter(
            "context_api_cache_hits_total", "Cache hits per tier.", ["tier"], registry=r
        )
        self.cache_misses = Counter(
            "context_api_cache_misses_total", "Cache misses per tier.", ["tier"], registry=r
        )
        self.l3_queries = Counter(
            "context_api_l3_queries_total", "PostgreSQL queries run.", ["query"], registry=r
        )
        self.l3_duration = Histogram(
            "context_api_l3_query_duration_seconds", "PostgreSQL query latency.", ["query"], registry=r
        )
        self.breaker_state = Gauge(
            "context_api_breaker_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open.", registry=r
        )
        self.l1_available = Gauge(
            "context_api_l1_available", "1 while requests use the Redis tier.", registry=r
        )
        self.singleflight_collapsed = Counter(
            "context_api_singleflight_collapsed_total",
            "Requests that waited for another request's load of the same key.",
            registry=r,
        )
        self.invalidations = Counter(
            "context_api_invalidations_total", "Tag invalidations applied.", ["origin"], registry=r
        )
        self.auth_failures = Counter(
            "context_api_auth_failures_total",
            "Requests refused for a missing, unknown, repeated or under-scoped bearer token.",
            ["reason"],
            registry=r,
        )
        for tier in ("l1", "l2"):
            self.cache_hits.labels(tier)
            self.cache_misses.labels(tier)
        self.cache_hits.labels("stale")  # a last known answer, given because PostgreSQL failed
        for origin in Origin:
            self.invalidations.labels(origin.value)

    def set_breaker(self, state: BreakerState) -> None:
        self.breaker_state.set(int(state))

    @contextmanager
    def l3(self, query: str) -> Iterator[None]:
        self.l3_queries.labels(query).inc()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.l3_duration.labels(query).observe(time.perf_counter() - start)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
