"""What the demo watches: the gateway's and Alertmanager's /metrics, the demo's namespace in PostgreSQL,
and the gateway's readiness (its blackout during the failover)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from kubernaut.store.schema import REQUESTS

WEBHOOK_ROUTE = "/api/v1/signals/prometheus"

Labels = dict[str, str]


@dataclass(frozen=True)
class Metrics:
    """The samples of one /metrics page."""

    samples: tuple[tuple[str, Labels, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Metrics:
        return cls(
            tuple(
                (s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(text)
                for s in family.samples
            )
        )

    def sum(self, name: str, where: Callable[[Labels], bool] = lambda _labels: True) -> float:
        return sum(v for n, labels, v in self.samples if n == name and where(labels))


async def scrape(client: httpx.AsyncClient, base_url: str) -> Metrics | None:
    """The /metrics page at ``base_url``, or None when it does not answer."""
    try:
        resp = await client.get(base_url + "/metrics")
    except httpx.HTTPError:
        return None
    return Metrics.parse(resp.text) if resp.status_code == 200 else None


def _outcome(*names: str) -> Callable[[Labels], bool]:
    return lambda labels: labels.get("outcome") in names


def _webhooks(status: Callable[[str], bool]) -> Callable[[Labels], bool]:
    return lambda labels: labels.get("route") == WEBHOOK_ROUTE and status(labels.get("status", ""))


@dataclass(frozen=True)
class Figures:
    """What the gateway and Alertmanager counted since the demo began (counter deltas)."""

    signals_in: int = 0
    deduplicated: int = 0
    storm_folded: int = 0
    resolved: int = 0
    requests_created: int = 0
    webhooks_sent: int = 0
    webhooks_accepted: int = 0
    webhooks_refused: int = 0

    @classmethod
    def between(cls, gw0: Metrics, gw: Metrics, am0: Metrics, am: Metrics) -> Figures:
        def delta(before: Metrics, now: Metrics, name: str, where: Callable[[Labels], bool]) -> int:
            return max(0, round(now.sum(name, where) - before.sum(name, where)))

        def signals(where: Callable[[Labels], bool]) -> int:
            return delta(gw0, gw, "gateway_signals_received_total", where)

        def webhook(integration: Labels) -> bool:
            return integration.get("integration") == "webhook"

        return cls(
            signals_in=signals(lambda _labels: True),
            deduplicated=signals(_outcome("duplicate")),
            storm_folded=signals(_outcome("storm_opened", "storm_aggregated")),
            resolved=signals(_outcome("resolved")),
            requests_created=delta(
                gw0, gw, "gateway_remediation_requests_created_total", lambda _labels: True
            ),
            webhooks_sent=delta(am0, am, "alertmanager_notification_requests_total", webhook),
            webhooks_accepted=delta(
                gw0, gw, "gateway_http_requests_total", _webhooks(lambda s: s.startswith("2"))
            ),
            webhooks_refused=delta(gw0, gw, "gateway_http_requests_total", _webhooks(lambda s: s == "503")),
        )


@dataclass(frozen=True)
class Request:
    """One RemediationRequest of the demo's namespace, as PostgreSQL holds it."""

    id: int
    fingerprint: str
    alertname: str
    resource: str
    occurrences: int
    storm_alerts: int | None  # None for a single request
    resolved: bool


async def namespace_requests(conn: asyncpg.Connection, namespace: str) -> list[Request]:
    rows = await conn.fetch(
        f"""
        SELECT id, fingerprint, signal_name, resource_kind, resource_name, occurrence_count, is_storm,
               storm_alert_count, resolved_at IS NOT NULL AS resolved
        FROM {REQUESTS} WHERE namespace = $1 ORDER BY id
        """,
        namespace,
    )
    return [
        Request(
            id=r["id"],
            fingerprint=r["fingerprint"],
            alertname=r["signal_name"],
            resource=f"{r['resource_kind']}/{r['resource_name']}",
            occurrences=r["occurrence_count"],
            storm_alerts=r["storm_alert_count"] if r["is_storm"] else None,
            resolved=r["resolved"],
        )
        for r in rows
    ]


@dataclass
class Blackout:
    """Spans during which the gateway's /readyz did not answer 200: from the first failing probe to the
    first succeeding one after it."""

    spans: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def ongoing(self) -> bool:
        return bool(self.spans) and self.spans[-1][1] is None

    def record(self, at: float, ready: bool) -> None:
        if not ready and not self.ongoing:
            self.spans.append((at, None))
        elif ready and self.ongoing:
            self.spans[-1] = (self.spans[-1][0], at)

    def seconds(self, now: float) -> float:
        return round(sum((end if end is not None else now) - start for start, end in self.spans), 2)


async def gateway_ready(client: httpx.AsyncClient, base_url: str) -> bool:
    try:
        return (await client.get(base_url + "/readyz")).status_code == 200
    except httpx.HTTPError:
        return False
