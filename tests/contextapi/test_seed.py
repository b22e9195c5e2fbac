"""The history generator follows the gateway's rules."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from kubernaut_tools.seed import (
    MEMBER_COLUMNS,
    OUTCOME_COLUMNS,
    REQUEST_COLUMNS,
    fingerprint,
    generate,
    priority,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_priority_matrix() -> None:
    assert priority("critical", "production") == "P0"
    assert priority("critical", "staging") == "P1"
    assert priority("warning", "production") == "P1"
    assert priority("warning", "staging") == "P2"
    assert priority("critical", "development") == "P2"
    assert priority("info", "production") == "P3"


def test_rows_are_consistent_and_deterministic() -> None:
    ids = list(range(1, 5001))
    h = generate(ids, seed=3, now=NOW)
    assert generate(ids, seed=3, now=NOW).requests == h.requests
    rows = [dict(zip(REQUEST_COLUMNS, r, strict=True)) for r in h.requests]
    outcomes = {o[0]: dict(zip(OUTCOME_COLUMNS, o, strict=True)) for o in h.outcomes}
    assert [r["id"] for r in rows] == ids
    assert [r["first_seen"] for r in rows] == sorted(r["first_seen"] for r in rows)
    assert all(NOW - timedelta(days=90) <= r["first_seen"] <= NOW for r in rows)
    assert len({r["namespace"] for r in rows}) >= 8
    assert len({r["signal_name"] for r in rows}) >= 10
    open_rows = [r for r in rows if r["resolved_at"] is None and r["phase"] in ("pending", "processing")]
    assert len(open_rows) == h.open
    assert max(Counter(r["fingerprint"] for r in open_rows).values(), default=1) == 1
    for r in rows:
        assert r["last_seen"] >= r["first_seen"]
        assert r["occurrence_count"] >= 1
        o = outcomes.get(r["id"])
        assert (o is not None) == (r["phase"] in ("completed", "failed"))
        if o is not None:
            assert r["phase"] == ("completed" if o["succeeded"] else "failed")
        if not r["is_storm"]:
            kind, name = r["resource_kind"], r["resource_name"]
            assert r["fingerprint"] == fingerprint(r["signal_name"], r["namespace"], kind, name)
    storms = [r for r in rows if r["is_storm"]]
    assert storms
    members = [dict(zip(MEMBER_COLUMNS, m, strict=True)) for m in h.members]
    for s in storms:
        mine = [m for m in members if m["request_id"] == s["id"]]
        assert sorted(m["resource"] for m in mine) == sorted(s["affected_resources"])
    rate = sum(o["succeeded"] for o in outcomes.values()) / len(outcomes)
    assert 0.6 < rate < 0.95


def test_fingerprints_already_open_are_not_opened_again() -> None:
    first = generate(list(range(1, 3001)), seed=5, now=NOW, days=1)
    taken = {r[1] for r in first.requests if r[REQUEST_COLUMNS.index("resolved_at")] is None}
    second = generate(list(range(1, 3001)), seed=5, now=NOW, days=1, taken_open=taken)
    phase, resolved = REQUEST_COLUMNS.index("phase"), REQUEST_COLUMNS.index("resolved_at")
    reopened = [
        r
        for r in second.requests
        if r[1] in taken and r[resolved] is None and r[phase] in ("pending", "processing")
    ]
    assert first.open > 0
    assert reopened == []
