"""The chaos drill's clients: concurrent senders that record every webhook and its answer (the history).

Each sender owns its alerts (one alert name per alert, one pod each, so no storm forms and the alert
name identifies the fingerprint) and waits for each answer before sending the next, so the history of
one alert is a sequence. A webhook either fires 1-3 of the sender's alerts or resolves one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from kubernaut_tools.drill.load import PROMETHEUS_PATH

ALERTS_PER_SENDER = 6
RESOLVE_SHARE = 0.1


@dataclass(slots=True)
class Event:
    """One webhook: what it carried and what came back."""

    sender: int
    seq: int
    sent_at: float
    done_at: float
    alerts: list[tuple[str, bool]]  # (alert name, firing)
    status: int  # 0: no answer
    retry_after: bool
    unanswered: bool  # sent, no answer: it may or may not have been taken
    outcomes: list[tuple[str, str, int | None]] = field(default_factory=list)  # (name, outcome, request id)

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused_retryable(self) -> bool:
        """Refused with a retry invitation, or never reached the gateway: nothing was taken."""
        return (self.status in (429, 503) and self.retry_after) or (self.status == 0 and not self.unanswered)

    @property
    def other_error(self) -> bool:
        return not (self.acknowledged or self.refused_retryable or self.unanswered)

    def as_json(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "seq": self.seq,
            "sent_at_s": round(self.sent_at, 3),
            "status": self.status,
            "alerts": self.alerts,
            "outcomes": self.outcomes,
        }


def alert_name(run: str, sender: int, k: int) -> str:
    return f"Chaos{run}S{sender}A{k}"


def _body(namespace: str, alerts: list[tuple[str, bool]]) -> bytes:
    return orjson.dumps(
        {
            "version": "4",
            "receiver": "kubernaut",
            "status": "firing" if any(f for _, f in alerts) else "resolved",
            "groupKey": f'{{}}:{{alertname="{alerts[0][0]}"}}',
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.local",
            "truncatedAlerts": 0,
            "alerts": [
                {
                    "status": "firing" if firing else "resolved",
                    "labels": {"alertname": name, "namespace": namespace, "pod": "p0", "severity": "warning"},
                    "annotations": {},
                    "startsAt": "2026-01-01T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z" if firing else "2026-01-01T00:01:00Z",
                    "generatorURL": "http://prometheus.local/graph",
                    "fingerprint": "",
                }
                for name, firing in alerts
            ],
        }
    )


async def send(
    client: httpx.AsyncClient,
    url: str,
    token: str | None,
    namespace: str,
    run: str,
    sender: int,
    seed: int,
    interval_s: float,
    stop: asyncio.Event,
    t0: float,
) -> list[Event]:
    """One sender's loop until ``stop``; times in the events are seconds since ``t0``."""
    rng = random.Random(f"kubernaut-chaos-sender:{seed}:{sender}")
    names = [alert_name(run, sender, k) for k in range(ALERTS_PER_SENDER)]
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    events: list[Event] = []
    seq = 0
    while not stop.is_set():
        if rng.random() < RESOLVE_SHARE:
            alerts = [(rng.choice(names), False)]
        else:
            alerts = [(name, True) for name in rng.sample(names, rng.randint(1, 3))]
        sent = time.monotonic()
        event = Event(sender, seq, sent - t0, 0.0, alerts, 0, False, False)
        seq += 1
        try:
            resp = await client.post(url + PROMETHEUS_PATH, content=_body(namespace, alerts), headers=headers)
        except httpx.ConnectError:
            pass  # nothing reached the gateway (killed, restarting)
        except httpx.HTTPError:
            event.unanswered = True
        else:
            event.status = resp.status_code
            event.retry_after = "retry-after" in resp.headers
            if event.acknowledged:
                signals = resp.json()["signals"]
                event.outcomes = [
                    (name, s["outcome"], s.get("request_id"))
                    for (name, _), s in zip(alerts, signals, strict=True)
                ]
        event.done_at = time.monotonic() - t0
        events.append(event)
        pause = interval_s - (time.monotonic() - sent)
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)
    return events
