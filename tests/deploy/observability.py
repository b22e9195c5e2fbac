"""What the alert rules and dashboards query, and the redis_exporter names they may use."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.manifests import DEPLOY, Rendered, render
from tests.deploy.promql import metric_names

DASHBOARDS = DEPLOY / "components" / "monitoring" / "dashboards"

# redis_exporter cannot run here: the series the rules and dashboards use from it, checked against its
# source (oliver006/redis_exporter v1.62.0: exporter/exporter.go metric maps, exporter/sentinels.go).
# Redis ones come from INFO (up, instance_info, memory, clients, commands, keyspace, replication, RDB);
# redis_sentinel_* from SENTINEL MASTERS / SENTINELS / SLAVES on the sentinel exporter.
REDIS_EXPORTER_METRICS = frozenset(
    {
        "redis_up",
        "redis_instance_info",
        "redis_connected_clients",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_commands_processed_total",
        "redis_db_keys",
        "redis_connected_slaves",
        "redis_master_link_up",
        "redis_connected_slave_lag_seconds",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_changes_since_last_save",
        "redis_evicted_keys_total",
        "redis_expired_keys_total",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_sentinel_master_ok_sentinels",
        "redis_sentinel_master_ok_slaves",
        "redis_sentinel_master_status",
        "redis_sentinel_tilt",
    }
)


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for d in dashboards().values() for p in d["panels"] for t in p["targets"]]


def rule_exprs(rendered: Rendered) -> list[str]:
    return [
        r["expr"]
        for rule in rendered.of_kind("PrometheusRule")
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    ]


def used_metrics() -> set[str]:
    return {
        name
        for expr in [*rule_exprs(render("production")), *dashboard_exprs()]
        for name in metric_names(expr)
    }
