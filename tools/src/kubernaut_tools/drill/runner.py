"""Run one scenario: steady load on the gateway and reads on the Context-API, the fault, then the proof."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from kubernaut_tools.drill.faults import SCENARIOS, FaultLog
from kubernaut_tools.drill.load import (
    PROMETHEUS_PATH,
    AlertMix,
    Exchange,
    ProbeResult,
    probe_steadily,
    send_steadily,
)
from kubernaut_tools.drill.verify import verify
from kubernaut_tools.localstack import LocalStack

WARMUP_S = 3.0
TAIL_S = 3.0
MAX_DURATION_S = 180.0


@dataclass(frozen=True)
class DrillReport:
    scenario: str
    sentinel_failover_s: float | None
    postgres_failover_s: float | None
    gateway_blackout_s: float
    sent: int
    accepted: int
    rejected_retryable: int
    other_errors: int
    error_statuses: dict[str, int]
    alerts_sent: int
    alerts_accepted: int
    lost: int
    duplicate_open_requests: int
    count_drift: int
    availability: float
    context_api_requests: int
    context_api_errors: int
    context_api_p99_ms: float | None
    old_master: str | None
    new_master: str | None
    checks: dict[str, bool]
    duration_s: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_open_requests == 0
            and self.other_errors == 0
            and self.context_api_errors == 0
            and all(self.checks.values())
        )


def blackout_s(exchanges: list[Exchange]) -> float:
    """From the first non-2xx answer's request to the last one's answer; 0 when every answer was 2xx."""
    failed = [e for e in exchanges if not e.accepted]
    if not failed:
        return 0.0
    return round(max(e.done_at for e in failed) - min(e.sent_at for e in failed), 3)


def p99_ms(probes: list[ProbeResult]) -> float | None:
    if not probes:
        return None
    latencies = sorted(p.latency_s for p in probes)
    return round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2)


async def run_drill(stack: LocalStack, scenario: str, *, rate_per_s: float = 20.0) -> DrillReport:
    """Run ``scenario`` against the running ``stack``; the stack is healthy again when this returns."""
    spec = SCENARIOS[scenario]
    namespace = f"drill-{scenario}-{int(time.time() * 1000)}"
    started = time.monotonic()
    stop = asyncio.Event()
    log = FaultLog()
    max_requests = int(rate_per_s * MAX_DURATION_S)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        load = asyncio.create_task(
            send_steadily(
                client,
                stack.url("gateway") + PROMETHEUS_PATH,
                stack.gateway_token,
                AlertMix(namespace),
                rate_per_s,
                stop,
                max_requests,
            )
        )
        probe = asyncio.create_task(
            probe_steadily(
                client,
                stack.url("context-api") + "/api/v1/incidents?limit=5",
                stack.context_api_read_token,
                10.0,
                stop,
                max_requests,
            )
        )
        try:
            await asyncio.sleep(WARMUP_S)
            await asyncio.to_thread(spec.inject, stack, log)
            await asyncio.sleep(TAIL_S)
        finally:
            stop.set()
            exchanges = await load
            probes = await probe
    checked = await verify(stack.postgres_dsn, namespace, exchanges)
    accepted = [e for e in exchanges if e.accepted]
    return DrillReport(
        scenario=scenario,
        sentinel_failover_s=log.sentinel_failover_s,
        postgres_failover_s=log.postgres_failover_s,
        gateway_blackout_s=blackout_s(exchanges),
        sent=len(exchanges),
        accepted=len(accepted),
        rejected_retryable=sum(1 for e in exchanges if e.retryable),
        other_errors=sum(1 for e in exchanges if not e.accepted and not e.retryable),
        error_statuses=dict(Counter(str(e.status) for e in exchanges if not e.accepted)),
        alerts_sent=sum(e.alerts for e in exchanges),
        alerts_accepted=checked.accepted_alerts,
        lost=checked.lost,
        duplicate_open_requests=checked.duplicate_open_requests,
        count_drift=checked.count_drift,
        availability=round(len(accepted) / len(exchanges), 4) if exchanges else 0.0,
        context_api_requests=len(probes),
        context_api_errors=sum(1 for p in probes if p.status != 200),
        context_api_p99_ms=p99_ms(probes),
        old_master=log.old_master,
        new_master=log.new_master,
        checks=log.checks,
        duration_s=round(time.monotonic() - started, 2),
    )
