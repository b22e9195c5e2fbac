"""``kubernaut seed-history``: realistic remediation history for demos, tests and benchmarks.

Incidents spread over the last ``days`` days (fewer at weekends) across production, staging and
development namespaces, from Prometheus alerts and Kubernetes events, with the actions an operator or an
AI would take and success rates that differ per action and environment. Rows follow the gateway's rules:
fingerprint as the gateway computes it, priority from severity x environment, and at most
one open request per fingerprint (fingerprints already open in the database are never opened again).
Everything goes in with COPY in one transaction.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from kubernaut.contextapi.queries import Conn
from kubernaut.gateway.signal import fingerprint as gateway_fingerprint
from kubernaut.store.schema import OPEN, OPEN_PHASES, OUTCOMES, REQUESTS, STORM_MEMBERS


@dataclass(frozen=True)
class SignalProfile:
    """One kind of signal in the seeded history: how often it comes and what is usually done about it."""

    name: str
    severity: str
    signal_type: str
    kind: str
    weight: float
    actions: tuple[str, ...]


PROM, EVENT = "prometheus", "kubernetes-event"
# name, severity, source (prom | event), resource kind, relative frequency, then the usual actions.
_SIGNAL_TABLE = """
KubePodCrashLooping warning prom Pod 9 restart_pod rollback_deployment increase_memory_limit
KubePodNotReady warning prom Pod 6 restart_pod delete_pod
KubeContainerOOMKilled critical prom Pod 5 increase_memory_limit restart_pod
CPUThrottlingHigh warning prom Deployment 5 scale_deployment increase_cpu_limit
KubeDeploymentReplicasMismatch warning prom Deployment 4 scale_deployment rollback_deployment
HTTPErrorRateHigh critical prom Service 4 rollback_deployment restart_pod
HTTPLatencyHigh warning prom Service 4 scale_deployment
KubePersistentVolumeFillingUp critical prom StatefulSet 2 expand_pvc cleanup_logs
KubeNodeNotReady critical prom Node 1.5 cordon_node drain_node
NodeFilesystemAlmostOutOfSpace warning prom Node 1.5 cleanup_images
CertificateExpiringSoon info prom Service 1 renew_certificate
OOMKilled critical event Pod 4 increase_memory_limit
BackOff warning event Pod 4 restart_pod rollback_deployment
FailedScheduling critical event Pod 2 adjust_resource_requests scale_cluster
Evicted critical event Pod 1.5 restart_pod
FailedMount critical event Pod 1 restart_pod recreate_pvc
"""
SIGNALS = tuple(
    SignalProfile(name, sev, PROM if src == "prom" else EVENT, kind, float(weight), tuple(actions))
    for name, sev, src, kind, weight, *actions in (
        line.split() for line in _SIGNAL_TABLE.strip().splitlines()
    )
)
# Chance that an action clears the alert in production.
ACTION_SUCCESS = {
    "restart_pod": 0.68,
    "delete_pod": 0.76,
    "rollback_deployment": 0.86,
    "increase_memory_limit": 0.9,
    "increase_cpu_limit": 0.87,
    "scale_deployment": 0.8,
    "expand_pvc": 0.93,
    "cleanup_logs": 0.7,
    "cordon_node": 0.9,
    "drain_node": 0.82,
    "cleanup_images": 0.85,
    "renew_certificate": 0.97,
    "adjust_resource_requests": 0.8,
    "scale_cluster": 0.6,
    "recreate_pvc": 0.7,
}

# namespace: (environment, weight, apps)
NAMESPACES = {
    "payments": ("production", 3.0, ("payments-api", "ledger", "fraud-scorer")),
    "checkout": ("production", 3.0, ("checkout-web", "cart", "pricing")),
    "catalog": ("production", 2.0, ("catalog-api", "image-resizer")),
    "identity": ("production", 2.0, ("auth", "sessions", "oidc-proxy")),
    "search": ("production", 1.5, ("search-api", "indexer")),
    "data-pipeline": ("production", 1.5, ("kafka-connect", "etl-worker", "spark-driver")),
    "monitoring": ("production", 1.0, ("prometheus", "grafana", "loki")),
    "staging-web": ("staging", 2.0, ("checkout-web", "catalog-api", "auth")),
    "staging-api": ("staging", 1.5, ("payments-api", "search-api")),
    "dev-sandbox": ("development", 1.0, ("playground", "feature-preview")),
}
NODE_NAMESPACE = "kube-system"
NODES = tuple(f"worker-{i:02d}" for i in range(1, 13))
ENV_PENALTY = {"production": 0.0, "staging": 0.05, "development": 0.1}
SOURCES = {PROM: "alertmanager", EVENT: "event-exporter"}

REQUEST_COLUMNS = (
    "id", "fingerprint", "signal_name", "signal_type", "source", "severity", "namespace", "resource_kind",
    "resource_name", "environment", "priority", "labels", "annotations", "phase", "first_seen", "last_seen",
    "occurrence_count", "resolved_at", "is_storm", "storm_type", "storm_alert_count", "affected_resources",
    "storm_window_start", "storm_window_end", "created_at", "updated_at",
)  # fmt: skip
OUTCOME_COLUMNS = ("request_id", "action", "succeeded", "detail", "recorded_at")
MEMBER_COLUMNS = ("request_id", "fingerprint", "resource", "first_seen")


def priority(severity: str, environment: str) -> str:
    if severity == "critical":
        return {"production": "P0", "staging": "P1"}.get(environment, "P2")
    if severity == "warning":
        return "P1" if environment == "production" else "P2"
    return "P3"


def fingerprint(name: str, namespace: str, kind: str, resource: str) -> str:
    return gateway_fingerprint(name, namespace, kind, resource)


@dataclass
class History:
    """Generated rows ready to copy into PostgreSQL: requests, outcomes and storm members."""

    requests: list[tuple[Any, ...]]
    outcomes: list[tuple[Any, ...]]
    members: list[tuple[Any, ...]]
    open: int = 0
    storms: int = 0


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, days: int, taken_open: set[str]) -> None:
        self.rng = rng
        self.now = now
        self.days = days
        self.taken_open = set(taken_open)
        self.pods = {
            (ns, app): tuple(
                f"{app}-{rng.getrandbits(36):09x}-{rng.getrandbits(20):05x}" for _ in range(rng.randint(2, 6))
            )
            for ns, (_env, _w, apps) in NAMESPACES.items()
            for app in apps
        }
        self.namespace_names = list(NAMESPACES)
        self.namespace_weights = [NAMESPACES[n][1] for n in self.namespace_names]
        self.signal_weights = [s.weight for s in SIGNALS]
        self._fingerprints: dict[tuple[str, str, str, str], str] = {}

    def fp(self, name: str, namespace: str, kind: str, resource: str) -> str:
        key = (name, namespace, kind, resource)
        found = self._fingerprints.get(key)
        if found is None:
            found = self._fingerprints[key] = fingerprint(*key)
        return found

    def when(self) -> datetime:
        while True:  # weekends see about 60% of a weekday's incidents
            t = self.now - timedelta(seconds=self.rng.uniform(0, self.days * 86400))
            if t.weekday() < 5 or self.rng.random() < 0.6:
                return t

    def resource(self, signal: SignalProfile, namespace: str) -> tuple[str, str]:
        if signal.kind == "Node":
            return NODE_NAMESPACE, self.rng.choice(NODES)
        app = self.rng.choice(NAMESPACES[namespace][2])
        if signal.kind == "Pod":
            return namespace, self.rng.choice(self.pods[(namespace, app)])
        if signal.kind == "StatefulSet":
            return namespace, f"{app}-db"
        return namespace, app

    def incident(self, ident: int, first_seen: datetime, history: History) -> None:
        rng = self.rng
        signal = rng.choices(SIGNALS, self.signal_weights)[0]
        namespace, name = self.resource(signal, rng.choices(self.namespace_names, self.namespace_weights)[0])
        environment = NAMESPACES[namespace][0] if namespace in NAMESPACES else "production"
        kind = signal.kind
        fp = self.fp(signal.name, namespace, kind, name)
        storm = None
        if signal.signal_type == PROM and kind == "Pod" and rng.random() < 0.02:
            storm = self.storm(ident, signal, namespace, first_seen, history)
            kind, name = "Pod", storm[1][0]
            fp = hashlib.sha256(
                f"storm:{signal.name}:{namespace}:{first_seen.isoformat()}".encode()
            ).hexdigest()
        occurrences = 1
        while occurrences < 200 and rng.random() < 0.65:
            occurrences += 1
        horizon = self.now - first_seen
        last_seen = min(self.now, first_seen + timedelta(seconds=(occurrences - 1) * rng.uniform(30, 300)))
        phase, resolved_at, updated_at = "pending", None, last_seen
        if horizon < timedelta(hours=6) and rng.random() < 0.5 and fp not in self.taken_open:
            self.taken_open.add(fp)
            phase = rng.choice(OPEN_PHASES)
            history.open += 1
        elif rng.random() < 0.78:
            action = rng.choice(signal.actions)
            succeeded = rng.random() < ACTION_SUCCESS[action] - ENV_PENALTY[environment]
            recorded_at = min(self.now, first_seen + timedelta(minutes=rng.uniform(1, 30)))
            phase = "completed" if succeeded else "failed"
            if succeeded or rng.random() < 0.6:
                resolved_at = min(self.now, recorded_at + timedelta(minutes=rng.uniform(1, 90)))
            detail = f"{action} on {kind.lower()}/{name}: " + (
                "alert cleared" if succeeded else "alert still firing"
            )
            history.outcomes.append((ident, action, succeeded, detail, recorded_at))
            updated_at = max(last_seen, resolved_at or recorded_at)
        else:  # resolved on its own before anyone acted
            resolved_at = min(self.now, last_seen + timedelta(minutes=rng.uniform(1, 60)))
            updated_at = resolved_at
        labels = {
            "alertname" if signal.signal_type == PROM else "reason": signal.name,
            "namespace": namespace,
        }
        labels.update({"severity": signal.severity, kind.lower(): name})
        annotations = {"summary": f"{signal.name} on {kind} {namespace}/{name}"}
        history.requests.append(
            (
                ident, fp, signal.name, signal.signal_type, SOURCES[signal.signal_type], signal.severity,
                namespace, kind, name, environment, priority(signal.severity, environment),
                orjson.dumps(labels).decode(), orjson.dumps(annotations).decode(), phase, first_seen,
                last_seen, occurrences, resolved_at, storm is not None, storm[0] if storm else None,
                storm[2] if storm else 0, list(storm[1]) if storm else [],
                first_seen if storm else None, storm[3] if storm else None, first_seen, updated_at,
            )
        )  # fmt: skip

    def storm(
        self, ident: int, signal: SignalProfile, namespace: str, start: datetime, history: History
    ) -> tuple[str, list[str], int, datetime]:
        rng = self.rng
        storm_type = rng.choice(("rate", "pattern"))
        pods = sorted({p for (ns, _app), ps in self.pods.items() if ns == namespace for p in ps})
        affected = rng.sample(pods, min(len(pods), rng.randint(6, 25)))
        for pod in affected:
            joined = start + timedelta(seconds=rng.uniform(0, 60))
            history.members.append((ident, self.fp(signal.name, namespace, "Pod", pod), pod, joined))
        history.storms += 1
        end = start + timedelta(seconds=rng.uniform(60, 300))
        return storm_type, affected, len(affected) + rng.randint(5, 120), end

    def generate(self, ids: list[int]) -> History:
        history = History([], [], [])
        for ident, first_seen in zip(ids, sorted(self.when() for _ in ids), strict=True):
            self.incident(ident, first_seen, history)
        return history


def generate(
    ids: list[int], *, seed: int, now: datetime, days: int = 90, taken_open: set[str] | None = None
) -> History:
    """The rows for incidents ``ids`` (ascending ids get ascending first_seen), deterministic per seed."""
    return _Generator(random.Random(seed), now, days, taken_open or set()).generate(ids)


@dataclass(frozen=True)
class SeedReport:
    """What ``seed-history`` wrote, and how long it took."""

    incidents: int
    outcomes: int
    storms: int
    open: int
    seconds: float


async def seed_history(conn: Conn, incidents: int, *, seed: int, days: int = 90) -> SeedReport:
    start = time.perf_counter()
    now = datetime.now(UTC)
    async with conn.transaction():
        ids = [
            r[0]
            for r in await conn.fetch(
                f"SELECT nextval(pg_get_serial_sequence('{REQUESTS}', 'id')) FROM generate_series(1, $1)",
                incidents,
            )
        ]
        taken = {r[0] for r in await conn.fetch(f"SELECT fingerprint FROM {REQUESTS} WHERE {OPEN}")}
        history = generate(ids, seed=seed, now=now, days=days, taken_open=taken)
        await conn.copy_records_to_table(REQUESTS, records=history.requests, columns=REQUEST_COLUMNS)
        await conn.copy_records_to_table(OUTCOMES, records=history.outcomes, columns=OUTCOME_COLUMNS)
        await conn.copy_records_to_table(STORM_MEMBERS, records=history.members, columns=MEMBER_COLUMNS)
    return SeedReport(
        incidents, len(history.outcomes), history.storms, history.open, time.perf_counter() - start
    )


async def seed_dsn(dsn: str, incidents: int, *, seed: int, days: int = 90) -> SeedReport:
    conn = await asyncpg.connect(dsn)
    try:
        return await seed_history(conn, incidents, seed=seed, days=days)
    finally:
        await conn.close()
