"""The expected answers, computed in Python from the raw rows (independently of the service's SQL)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, timedelta
from typing import Any

import asyncpg

Row = dict[str, Any]


async def raw_rows(db: asyncpg.Connection) -> list[Row]:
    records = await db.fetch(
        """SELECT r.id, r.namespace, r.severity, r.signal_name, r.fingerprint, r.phase, r.first_seen,
                  r.resolved_at, o.action, o.succeeded
           FROM remediation_requests r LEFT JOIN remediation_outcomes o ON o.request_id = r.id"""
    )
    return [dict(r) for r in records]


def matches(row: Row, f: dict[str, Any]) -> bool:
    checks = {
        "namespace": row["namespace"],
        "severity": row["severity"],
        "alertname": row["signal_name"],
        "fingerprint": row["fingerprint"],
        "phase": row["phase"],
        "action": row["action"],
    }
    for name, value in f.items():
        if name == "since":
            if row["first_seen"] < value:
                return False
        elif name == "until":
            if row["first_seen"] >= value:
                return False
        elif checks[name] != value:
            return False
    return True


def newest_first(rows: list[Row]) -> list[int]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["first_seen"], r["id"]), reverse=True)]


def is_open(row: Row) -> bool:
    return row["resolved_at"] is None and row["phase"] in ("pending", "processing")


def success_rate(rows: list[Row], f: dict[str, Any]) -> dict[str, Any]:
    picked = [r for r in rows if r["action"] is not None and matches(r, f)]
    by_action: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in picked:
        by_action[r["action"]][0 if r["succeeded"] else 1] += 1
    return {
        "total": len(picked),
        "succeeded": sum(1 for r in picked if r["succeeded"]),
        "by_action": {a: (s, f_) for a, (s, f_) in by_action.items()},
    }


def breakdown(rows: list[Row], column: str, f: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    """name -> (incidents, open, succeeded, failed)"""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        if matches(r, f):
            c = out[r[column]]
            c[0] += 1
            c[1] += is_open(r)
            c[2] += r["succeeded"] is True
            c[3] += r["succeeded"] is False
    return {k: (a, b, c, d) for k, (a, b, c, d) in out.items()}


def trend(rows: list[Row], today: date, days: int, f: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """[(UTC day, incidents, succeeded, failed)] for the ``days`` days ending ``today``."""
    first = today - timedelta(days=days - 1)
    counts = {first + timedelta(days=i): [0, 0, 0] for i in range(days)}
    for r in rows:
        c = counts.get(r["first_seen"].astimezone(UTC).date())
        if c is not None and matches(r, f):
            c[0] += 1
            c[1] += r["succeeded"] is True
            c[2] += r["succeeded"] is False
    return [(d.isoformat(), c[0], c[1], c[2]) for d, c in sorted(counts.items())]
