"""A bounded, steady alert load in Alertmanager's webhook shape, and a Context-API read probe."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

PROMETHEUS_PATH = "/api/v1/signals/prometheus"
STEADY_ALERTS = 20
STORM_SIZE = 15


@dataclass(slots=True)
class Exchange:
    """One webhook and its answer."""

    sent_at: float
    done_at: float
    status: int  # 0 when the request never got an answer
    retry_after: bool
    alerts: int
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (fingerprint, outcome) when 2xx

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status in (429, 503) and self.retry_after


class AlertMix:
    """Deterministic mix per webhook: a repeat of one of 20 steady alerts, a new alert every third
    webhook, and every 100th webhook a storm of 15 alerts of one name on 15 pods."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.tick = 0

    def _alert(self, name: str, pod: str) -> dict[str, Any]:
        return {
            "status": "firing",
            "labels": {
                "alertname": name,
                "namespace": self.namespace,
                "pod": pod,
                "severity": "warning",
            },
            "annotations": {"summary": f"{name} on {pod}"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.local/graph",
            "fingerprint": "",
        }

    def next_webhook(self) -> tuple[bytes, int]:
        """The next webhook body and how many alerts it carries."""
        i = self.tick
        self.tick += 1
        if i % 100 == 50:
            k = i // 100
            alerts = [self._alert(f"DrillStorm{k}", f"storm-{k}-{p}") for p in range(STORM_SIZE)]
        else:
            alerts = [self._alert(f"DrillSteady{i % STEADY_ALERTS}", "steady-0")]
            if i % 3 == 0:
                alerts.append(self._alert(f"DrillNew{i}", "new-0"))
        body = orjson.dumps(
            {
                "version": "4",
                "receiver": "kubernaut",
                "status": "firing",
                "groupKey": f'{{}}:{{alertname="{alerts[0]["labels"]["alertname"]}"}}',
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager.local",
                "truncatedAlerts": 0,
                "alerts": alerts,
            }
        )
        return body, len(alerts)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` (the load's pacing), or less if ``stop`` is set meanwhile."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


async def send_steadily(
    client: httpx.AsyncClient,
    url: str,
    token: str | None,
    mix: AlertMix,
    rate_per_s: float,
    stop: asyncio.Event,
    max_requests: int,
) -> list[Exchange]:
    """Send webhooks at a steady rate until ``stop`` is set or ``max_requests`` were sent."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    results: list[Exchange] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(body: bytes, alerts: int) -> None:
        sent = time.monotonic()
        try:
            resp = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            results.append(Exchange(sent, time.monotonic(), 0, False, alerts))
            return
        ex = Exchange(sent, time.monotonic(), resp.status_code, "retry-after" in resp.headers, alerts)
        if ex.accepted:
            ex.outcomes = [(s["fingerprint"], s["outcome"]) for s in resp.json()["signals"]]
        results.append(ex)

    interval = 1.0 / rate_per_s
    next_at = time.monotonic()
    for _ in range(max_requests):
        if stop.is_set():
            break
        task = asyncio.create_task(one(*mix.next_webhook()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += interval
        await _pause(stop, next_at - time.monotonic())
    if tasks:
        await asyncio.gather(*tasks)
    return sorted(results, key=lambda e: e.sent_at)


@dataclass(slots=True)
class ProbeResult:
    at: float
    status: int
    latency_s: float


async def probe_steadily(
    client: httpx.AsyncClient,
    url: str,
    token: str,
    rate_per_s: float,
    stop: asyncio.Event,
    max_requests: int,
) -> list[ProbeResult]:
    """Read ``url`` with bearer ``token`` at a steady rate, one request at a time, until ``stop``."""
    headers = {"authorization": f"Bearer {token}"}
    results: list[ProbeResult] = []
    for _ in range(max_requests):
        if stop.is_set():
            break
        start = time.monotonic()
        try:
            status = (await client.get(url, headers=headers)).status_code
        except httpx.HTTPError:
            status = 0
        results.append(ProbeResult(start, status, time.monotonic() - start))
        await _pause(stop, 1.0 / rate_per_s - (time.monotonic() - start))
    return results
