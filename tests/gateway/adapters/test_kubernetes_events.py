"""The Kubernetes Events corpus replayed by `kubernaut send` (a real subprocess, the local stack's defaults
for URL and token), and the requests it made read back through the Context-API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubernaut_tools.localstack import LocalStack
from tests.alerting_helpers import ContextApi, table_rows

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).parents[2] / "data" / "kubernetes-events.json"


def test_the_corpus_makes_one_request_per_warning_and_refuses_the_normal_event(
    services: LocalStack,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernaut",
            "send",
            "--kubernetes-events",
            str(CORPUS),
            "--run-dir",
            str(services.run.root),
            "--port-offset",
            str(services.topology.offset),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    events = json.loads(CORPUS.read_text())["items"]
    rows = table_rows(result.stdout)
    assert len(rows) == len(events)

    api = ContextApi(services)
    ids = []
    for row, event in zip(rows, events, strict=True):
        obj = event["involvedObject"]
        namespace = obj.get("namespace") or event["metadata"]["namespace"]
        if event["type"] == "Normal":
            assert (row[2], row[3]) == ("400", "rejected")
            refused = api.incidents(namespace=namespace, alertname=event["reason"])
            assert refused is not None
            assert refused["total"] == 0, "a refused event changes nothing"
            continue
        assert row[2] in ("201", "202"), row
        request_id = int(row[4].removeprefix("request "))
        ids.append(request_id)
        incident = api.incident(request_id)
        assert incident is not None
        assert incident["signal_type"] == "kubernetes-event"
        assert incident["alertname"] == event["reason"]
        assert incident["namespace"] == namespace
        assert incident["resource"] == {"kind": obj["kind"], "name": obj["name"]}
        assert incident["source"] == "local"
        assert incident["resolved_at"] is None
    assert len(set(ids)) == len(ids) == sum(e["type"] == "Warning" for e in events)
