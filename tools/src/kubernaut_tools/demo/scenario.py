"""The demo's script: which series of the signal source it sets, phase by phase, in its own namespace.

Every alert comes from a local rule (kubernaut_tools.localstack.alerting) firing on a real series, so the
gateway sees exactly what Alertmanager sends: groups, repeats, retries and resolutions.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from kubernaut.gateway.signal import fingerprint
from kubernaut_tools.localstack.alerting import RULES
from kubernaut_tools.localstack.signal_source import ScenarioSeries

STORM_PODS = 15
# The repeating alert's route re-notifies every 3 s: this many occurrences shows repeats deduplicated.
REPEATS_SHOWN = 3

_ALERTNAME = {r.scenario: r.alert for r in RULES}


def alert_fingerprint(signal: ScenarioSeries) -> str:
    """The gateway's fingerprint of the alert a local rule fires for ``signal`` (the pod is the resource)."""
    return fingerprint(_ALERTNAME[signal.scenario], signal.namespace, "Pod", signal.pod)


def new_namespace() -> str:
    """A namespace of this run only: its alerts meet no dedup or storm state of an earlier run."""
    return f"demo-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Phase:
    title: str
    timeout_s: float


FIRE = Phase("a steady, a repeating and a resolving alert fire", 25)
STORM = Phase(f"a storm: one alert on {STORM_PODS} pods", 25)
FAILOVER = Phase("kill -9 the gateway's Redis master (a new alert fires meanwhile)", 60)
RESOLVE = Phase("the resolving alert clears", 25)
SETTLE = Phase("settle: every alert in PostgreSQL, repeats counted", 30)
PHASES = (FIRE, STORM, FAILOVER, RESOLVE, SETTLE)


@dataclass(frozen=True)
class Script:
    namespace: str

    def first(self) -> list[ScenarioSeries]:
        ns = self.namespace
        return [
            ScenarioSeries("steady", ns, "web-0"),
            ScenarioSeries("repeating", ns, "api-0"),
            self.resolving(),
        ]

    def storm(self) -> list[ScenarioSeries]:
        return [ScenarioSeries("storm", self.namespace, f"worker-{i}") for i in range(STORM_PODS)]

    def during_failover(self) -> list[ScenarioSeries]:
        return [ScenarioSeries("steady", self.namespace, "web-1")]

    def resolving(self) -> ScenarioSeries:
        return ScenarioSeries("resolving", self.namespace, "db-0")

    def resolved(self) -> ScenarioSeries:
        return replace(self.resolving(), active=False)

    def repeating(self) -> ScenarioSeries:
        return ScenarioSeries("repeating", self.namespace, "api-0")
