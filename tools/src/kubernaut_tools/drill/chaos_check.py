"""The chaos drill's checker: the recorded history against what PostgreSQL holds.

Per alert (one fingerprint each), from its sequence of webhooks:
- every acknowledged firing occurrence names a request that exists (else ``lost``);
- counted occurrences (the sum of ``occurrence_count`` over its requests) lie between the acknowledged
  occurrences and those plus the occurrences of webhooks that got no answer (they may have been taken);
  a refused webhook counts nothing. Outside that range is ``count_drift``;
- an acknowledgement after the alert's last resolution attempt names a request that is still open, and
  such an alert has an open request (else ``acks_on_closed_requests``);
- at most one open request per fingerprint (``duplicate_open_requests``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernaut_tools.drill.chaos_history import Event

_FIRING_OUTCOMES = {"created", "duplicate", "storm_opened", "storm_aggregated"}


@dataclass(frozen=True)
class Row:
    id: int
    name: str
    occurrence_count: int
    open: bool


@dataclass
class Findings:
    lost: int = 0
    count_drift_sum: int = 0
    count_drift_max_abs: int = 0
    acks_on_closed_requests: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)


def check(events: Iterable[Event], rows: Iterable[Row]) -> Findings:
    by_name: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e.sender, e.seq)):
        for name in dict(event.alerts):
            by_name[name].append(event)
    rows_of: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        rows_of[row.name].append(row)
    found = Findings()
    for name in sorted(by_name):
        _check_alert(name, by_name[name], rows_of.get(name, []), found)
    for name in sorted(set(rows_of) - set(by_name)):
        found.violations.append({"kind": "unexpected_request", "alert": name, "requests": len(rows_of[name])})
    return found


def _check_alert(name: str, history: list[Event], rows: list[Row], found: Findings) -> None:
    ids = {r.id for r in rows}
    open_ids = {r.id for r in rows if r.open}
    acked = uncertain = 0
    last_resolve = -1
    for i, event in enumerate(history):
        firing = dict(event.alerts)[name]
        if not firing:
            last_resolve = i
            continue
        if event.acknowledged:
            acked += 1
        elif event.unanswered:
            uncertain += 1
    for i, event in enumerate(history):
        if not event.acknowledged:
            continue
        for alert, outcome, request_id in event.outcomes:
            if alert != name or outcome not in _FIRING_OUTCOMES:
                continue
            if request_id not in ids:
                found.lost += 1
                found.violations.append(
                    {"kind": "lost", "alert": name, "request_id": request_id, "event": event.as_json()}
                )
            elif i > last_resolve and request_id not in open_ids:
                found.acks_on_closed_requests += 1
                found.violations.append(
                    {"kind": "ack_on_closed_request", "alert": name, "event": event.as_json()}
                )
    fired_since_resolve = any(e.acknowledged and dict(e.alerts)[name] for e in history[last_resolve + 1 :])
    if fired_since_resolve and not open_ids:
        found.violations.append({"kind": "no_open_request_while_firing", "alert": name})
    counted = sum(r.occurrence_count for r in rows)
    drift = counted - acked if counted < acked else max(0, counted - acked - uncertain)
    if drift:
        found.count_drift_sum += drift
        found.count_drift_max_abs = max(found.count_drift_max_abs, abs(drift))
        refused = [e for e in history if e.refused_retryable and dict(e.alerts)[name]]
        violation: dict[str, Any] = {
            "kind": "count_drift",
            "alert": name,
            "counted": counted,
            "acknowledged": acked,
            "unanswered": uncertain,
            "refused": len(refused),
            "drift": drift,
        }
        if 0 < drift <= len(refused):
            violation["likely_cause"] = "refused webhooks were counted (issue 12 item 3)"
            violation["refused_at_s"] = [round(e.sent_at, 3) for e in refused]
        found.violations.append(violation)
