"""The alerts a benchmark sends, and how each target wants them encoded.

A request body is built from a *batch*: 1 alert (single) or 50 alerts of one alert name in one namespace
(what Alertmanager sends for one group). A mix is a list of batches that wrk sends round-robin:

- ``repeat-heavy``: 9 fixed batches (sent once before measuring, so each is a repeat afterwards) and
  1 batch of never-seen alerts: 90 % of requests repeat, 10 % are new;
- ``all-new``: every alert of every request is one never seen before.

A never-seen alert carries ``UNIQUE`` (``@@N@@``) in its pod label; the wrk script replaces it per request.
Every target receives the same alerts; only the envelope differs (:data:`Encoder`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

UNIQUE = "@@N@@"
Mix = Literal["repeat-heavy", "all-new"]
MIXES: tuple[Mix, ...] = ("repeat-heavy", "all-new")
REPEATED_BATCHES = 9

_ALERT_NAMES = (
    "KubePodCrashLooping",
    "KubeContainerOOMKilled",
    "HighLatency",
    "ErrorRateHigh",
    "DiskPressure",
)
_NAMESPACES = ("payments", "checkout", "search", "ledger", "identity")


@dataclass(frozen=True)
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str


Encoder = Callable[[list[Alert]], str]


def _batch(alertname: str, namespace: str, pod_stem: str, size: int, starts_at: str) -> list[Alert]:
    return [
        Alert(
            labels={
                "alertname": alertname,
                "namespace": namespace,
                "pod": f"{pod_stem}-{i}",
                "severity": "critical" if i % 3 == 0 else "warning",
                "job": "kube-state-metrics",
            },
            annotations={
                "summary": f"{alertname} on {namespace}/{pod_stem}-{i}",
                "runbook_url": f"https://runbooks.example.com/{alertname.lower()}",
            },
            starts_at=starts_at,
        )
        for i in range(size)
    ]


def batches(mix: Mix, size: int, now: datetime | None = None) -> list[list[Alert]]:
    """The batches of ``mix``, each of ``size`` alerts; only the last one of a mix carries ``UNIQUE``."""
    starts_at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fixed = [
        _batch(_ALERT_NAMES[k % 5], _NAMESPACES[k % 5], f"api-{k}", size, starts_at)
        for k in range(REPEATED_BATCHES)
    ]
    new = _batch(_ALERT_NAMES[0], _NAMESPACES[0], f"api-{UNIQUE}", size, starts_at)
    return [*fixed, new] if mix == "repeat-heavy" else [new]


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def alertmanager_v2(alerts: list[Alert]) -> str:
    """Alertmanager's ``POST /api/v2/alerts`` body: a list of postable alerts."""
    return _compact(
        [
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "generatorURL": "http://prometheus.example.com/graph",
            }
            for a in alerts
        ]
    )


def _fingerprint(labels: dict[str, str]) -> str:
    # Alertmanager's own is FNV-64 of the label set; any stable 16-hex digest serves a receiver the same way.
    # A never-seen alert keeps its template's: receivers derive identity from the labels, not this field.
    return hashlib.sha256(_compact(sorted(labels.items())).encode()).hexdigest()[:16]


def webhook_v4(alerts: list[Alert]) -> str:
    """An Alertmanager webhook (version 4) notification carrying ``alerts``, as a receiver gets it."""
    common = dict(set.intersection(*(set(a.labels.items()) for a in alerts)))
    group = {k: common[k] for k in ("alertname", "namespace") if k in common}
    return _compact(
        {
            "version": "4",
            "groupKey": "{}:" + _compact(group),
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "kubernaut-gateway",
            "groupLabels": group,
            "commonLabels": common,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example.com",
            "alerts": [
                {
                    "status": "firing",
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.example.com/graph",
                    "fingerprint": _fingerprint(a.labels),
                }
                for a in alerts
            ],
        }
    )
