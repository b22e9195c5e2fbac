"""Prometheus and Alertmanager for the local stack (``kubernaut up --with-alerting``), from Debian's packages.

Prometheus scrapes both services, the signal source, Alertmanager and itself every second and evaluates
the local alert rules; Alertmanager sends every alert to the gateway's webhook with the stack's bearer
token. The timings are seconds, not Alertmanager's production defaults (30 s / 5 min / 4 h), so a local
run or an e2e test sees first notifications, repeats and resolutions within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubernaut_tools.localstack.signal_source import METRIC

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
WEBHOOK_PATH = "/api/v1/signals/prometheus"
RECEIVER = "kubernaut-gateway"

EVALUATION_INTERVAL = "1s"
GROUP_WAIT = "1s"
GROUP_INTERVAL = "2s"
REPEAT_INTERVAL = "30s"
# Prometheus re-sends firing alerts this often; Alertmanager expires one after 4x this without a re-send.
RESEND_DELAY = "2s"


@dataclass(frozen=True)
class AlertRule:
    """A local rule: fires for every active series of its scenario in the signal source."""

    alert: str
    scenario: str
    severity: str
    summary: str
    repeat_interval: str | None = None  # an own Alertmanager route when set


RULES = (
    AlertRule("KubernautSteadyAlert", "steady", "warning", "a steady condition on {{ $labels.pod }}"),
    AlertRule(
        "KubernautRepeatingAlert",
        "repeating",
        "critical",
        "a condition Alertmanager keeps re-notifying for {{ $labels.pod }}",
        repeat_interval="3s",
    ),
    AlertRule("KubernautStormAlert", "storm", "critical", "one of many failing pods: {{ $labels.pod }}"),
    AlertRule(
        "KubernautResolvingAlert", "resolving", "warning", "a condition that clears on {{ $labels.pod }}"
    ),
)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def rules_yaml() -> str:
    rules = [
        {
            "alert": r.alert,
            # Aggregating away job/instance keeps the alert's labels to the signal's own identity.
            "expr": f'max by (namespace, pod) ({METRIC}{{scenario="{r.scenario}"}}) == 1',
            "labels": {"severity": r.severity, "scenario": r.scenario},
            "annotations": {"summary": r.summary},
        }
        for r in RULES
    ]
    return _dump({"groups": [{"name": "kubernaut-local", "interval": EVALUATION_INTERVAL, "rules": rules}]})


@dataclass(frozen=True)
class ScrapeTargets:
    gateway: str
    context_api: str
    signal_source: str
    alertmanager: str
    prometheus: str


def prometheus_yaml(targets: ScrapeTargets, rules_file: Path) -> str:
    jobs = {
        "kubernaut-gateway": targets.gateway,
        "kubernaut-context-api": targets.context_api,
        "kubernaut-signal-source": targets.signal_source,
        "alertmanager": targets.alertmanager,
        "prometheus": targets.prometheus,
    }
    return _dump(
        {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": EVALUATION_INTERVAL,
            },
            "rule_files": [str(rules_file)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [targets.alertmanager]}]}]},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in jobs.items()
            ],
        }
    )


def alertmanager_yaml(webhook_url: str, credentials_file: Path) -> str:
    return _dump(
        {
            "route": {
                "receiver": RECEIVER,
                "group_by": ["alertname", "namespace"],
                "group_wait": GROUP_WAIT,
                "group_interval": GROUP_INTERVAL,
                "repeat_interval": REPEAT_INTERVAL,
                "routes": [
                    {"matchers": [f'alertname="{r.alert}"'], "repeat_interval": r.repeat_interval}
                    for r in RULES
                    if r.repeat_interval is not None
                ],
            },
            "receivers": [
                {
                    "name": RECEIVER,
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "max_alerts": 0,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials_file": str(credentials_file)}
                            },
                        }
                    ],
                }
            ],
        }
    )


def prometheus_argv(config: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={listen}",
        f"--web.external-url=http://{listen}",  # alerts' generatorURL then points at this Prometheus
        f"--rules.alert.resend-delay={RESEND_DELAY}",
    ]


def alertmanager_argv(config: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",  # a single local instance: no gossip
    ]
