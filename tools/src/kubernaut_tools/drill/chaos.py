"""`kubernaut drill chaos`: concurrent senders record a history while a nemesis applies a seeded fault
schedule to the running local stack; the checker then compares the history with PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from kubernaut.store.schema import OPEN, REQUESTS
from kubernaut_tools.drill import chaos_history, chaos_nemesis
from kubernaut_tools.drill.chaos_check import Findings, Row, check
from kubernaut_tools.drill.chaos_schedule import KINDS, TAIL_S, schedule
from kubernaut_tools.drill.verify import duplicate_open_requests
from kubernaut_tools.localstack import LocalStack

SENDERS = 4
SEND_INTERVAL_S = 0.1  # per sender: about 40 webhooks/s in all
CLIENT_TIMEOUT_S = 30.0
# A gateway takes no count from Redis for 15 s after a failed call (redis_state._DOUBT_S), then flushes.
SETTLE_S = 25.0
# A killed gateway's unflushed batch is adopted once its instance has been silent this long
# (redis_state._FLUSHER_STALE_MS) plus a few flush intervals.
ADOPTION_S = 35.0
_POLL_S = 1.0

_ROWS = f"""
SELECT id, signal_name, occurrence_count,
       ({OPEN}) AS open
FROM {REQUESTS} WHERE namespace = $1
"""


@dataclass
class ChaosReport:
    seed: int
    duration_s: float
    namespace: str
    faults: list[dict[str, Any]]
    sent: int
    acknowledged: int
    refused_retryable: int
    unanswered: int
    other_errors: int
    lost: int
    duplicate_open_requests: int
    count_drift: dict[str, int]
    acks_on_closed_requests: int
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": self.duration_s,
            "namespace": self.namespace,
            "faults": self.faults,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "refused_retryable": self.refused_retryable,
            "unanswered": self.unanswered,
            "other_errors": self.other_errors,
            "lost": self.lost,
            "duplicate_open_requests": self.duplicate_open_requests,
            "count_drift": self.count_drift,
            "acks_on_closed_requests": self.acks_on_closed_requests,
            "violations": self.violations,
        }


async def _audit(dsn: str, namespace: str, events: list[chaos_history.Event]) -> tuple[Findings, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = [
            Row(r["id"], r["signal_name"], r["occurrence_count"], r["open"])
            for r in await conn.fetch(_ROWS, namespace)
        ]
        return check(events, rows), await duplicate_open_requests(conn, namespace)
    finally:
        await conn.close()


async def _settled_audit(
    dsn: str, namespace: str, events: list[chaos_history.Event], settle_until: float
) -> tuple[Findings, int]:
    """Audit until the counts are exact or the flushes have had their time (then report what is left)."""
    while True:
        findings, duplicates = await _audit(dsn, namespace, events)
        if findings.count_drift_max_abs == 0 or time.monotonic() >= settle_until:
            return findings, duplicates
        await asyncio.sleep(_POLL_S)


async def run_chaos(
    stack: LocalStack,
    seed: int,
    duration_s: float,
    progress: Callable[[str], None] | None = None,
    kinds: tuple[str, ...] = KINDS,
) -> ChaosReport:
    plan = schedule(seed, duration_s, kinds)
    run = os.urandom(3).hex()
    namespace = f"chaos-{seed}-{run}"
    stop = asyncio.Event()
    t0 = time.monotonic()
    applied: list[chaos_nemesis.AppliedFault] = []
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as client:
        senders = [
            asyncio.create_task(
                chaos_history.send(
                    client,
                    stack.url("gateway"),
                    stack.gateway_token,
                    namespace,
                    run,
                    i,
                    seed,
                    SEND_INTERVAL_S,
                    stop,
                    t0,
                )
            )
            for i in range(SENDERS)
        ]
        nemesis_error: dict[str, Any] | None = None
        try:
            for fault in plan:
                if progress is not None:
                    progress(f"{fault.at_s:7.1f} s  {fault.kind} (hold {fault.hold_s} s)")
                try:
                    applied.append(await asyncio.to_thread(chaos_nemesis.apply, stack, fault, t0))
                except (RuntimeError, TimeoutError, OSError) as err:
                    # The stack did not heal: stop faulting, still audit what was recorded.
                    nemesis_error = {"kind": "heal_failed", "fault": fault.as_json(), "error": str(err)}
                    break
            rest = t0 + duration_s - time.monotonic()
            await asyncio.sleep(max(rest, TAIL_S if plan else 0.0))
        finally:
            stop.set()
            histories = await asyncio.gather(*senders, return_exceptions=True)
    events = [e for h in histories if not isinstance(h, BaseException) for e in h]
    errors = [h for h in histories if isinstance(h, BaseException)]
    last_gateway_kill = max(
        (t0 + f.healed_at_s for f in applied if f.plan.kind == "gateway-kill"), default=0.0
    )
    settle_until = max(time.monotonic() + SETTLE_S, last_gateway_kill + ADOPTION_S)
    findings, duplicates = await _settled_audit(stack.postgres_dsn, namespace, events, settle_until)
    violations = list(findings.violations)
    violations += [{"kind": "sender_crashed", "error": repr(e)} for e in errors]
    if nemesis_error is not None:
        violations.append(nemesis_error)
    other = [e for e in events if e.other_error]
    violations += [{"kind": "error_answer", "event": e.as_json()} for e in other]
    if duplicates:
        violations.append({"kind": "duplicate_open_requests", "fingerprints": duplicates})
    return ChaosReport(
        seed=seed,
        duration_s=duration_s,
        namespace=namespace,
        faults=[f.as_json() for f in applied],
        sent=len(events),
        acknowledged=sum(1 for e in events if e.acknowledged),
        refused_retryable=sum(1 for e in events if e.refused_retryable),
        unanswered=sum(1 for e in events if e.unanswered),
        other_errors=len(other),
        lost=findings.lost,
        duplicate_open_requests=duplicates,
        count_drift={"sum": findings.count_drift_sum, "max_abs": findings.count_drift_max_abs},
        acks_on_closed_requests=findings.acks_on_closed_requests,
        violations=violations,
    )
