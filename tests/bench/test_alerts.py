"""The benchmark's alerts: the mixes it promises, and each target's envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kubernaut_tools.bench.alerts import REPEATED_BATCHES, UNIQUE, alertmanager_v2, batches, webhook_v4

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_repeat_heavy_is_nine_fixed_batches_and_one_never_seen() -> None:
    mix = batches("repeat-heavy", 50, NOW)
    assert len(mix) == REPEATED_BATCHES + 1
    assert all(len(b) == 50 for b in mix)
    assert [any(UNIQUE in a.labels["pod"] for a in b) for b in mix] == [False] * REPEATED_BATCHES + [True]
    fixed = {tuple(sorted(a.labels.items())) for b in mix[:-1] for a in b}
    assert len(fixed) == REPEATED_BATCHES * 50, "every fixed alert is distinct"


def test_a_batch_is_one_group_of_distinct_pods() -> None:
    for batch in batches("all-new", 50, NOW):
        assert len({(a.labels["alertname"], a.labels["namespace"]) for a in batch}) == 1
        assert len({a.labels["pod"] for a in batch}) == 50
        assert all(UNIQUE in a.labels["pod"] for a in batch)


def test_alertmanager_v2_body_is_a_list_of_postable_alerts() -> None:
    (batch,) = batches("all-new", 2, NOW)
    body = json.loads(alertmanager_v2(batch))
    assert [set(a) for a in body] == [{"labels", "annotations", "startsAt", "generatorURL"}] * 2
    assert body[0]["startsAt"] == "2026-11-26T08:00:00.000Z"
    assert body[0]["labels"] == batch[0].labels


def test_webhook_v4_body_is_what_alertmanager_sends_a_receiver() -> None:
    (batch,) = batches("all-new", 3, NOW)
    body = json.loads(webhook_v4(batch))
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "KubePodCrashLooping", "namespace": "payments"}
    assert "pod" not in body["commonLabels"]
    assert body["commonLabels"]["alertname"] == "KubePodCrashLooping"
    assert len(body["alerts"]) == 3
    assert {len(a["fingerprint"]) for a in body["alerts"]} == {16}
    assert body["alerts"][0]["labels"] == batch[0].labels


def test_the_unique_token_survives_json_encoding() -> None:
    (batch,) = batches("all-new", 1, NOW)
    assert UNIQUE in alertmanager_v2(batch)
    assert UNIQUE in webhook_v4(batch)
