"""`kubernaut send` and the benchmark's gateway target against the real gateway process of the stack."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubernaut_tools.bench.alerts import batches, webhook_v4
from kubernaut_tools.bench.ingest import SHAPES, IngestTarget, measure
from kubernaut_tools.bench.wrk import Load
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.alerting import WEBHOOK_PATH
from tests.alerting_helpers import table_rows

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).parents[1] / "data" / "kubernetes-events.json"


@pytest.fixture(scope="module")
def gateway(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack's gateway; stopped afterwards only if this module started it (the session's
    ``gateway_url`` fixture may own it)."""
    started = stack.record("gateway") is None
    stack.start_service("gateway", timeout=60)
    yield stack
    if started:
        stack.stop_component("gateway")


def send(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", "send", *args, "--url", stack.url("gateway")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_the_corpus_replays_warnings_accepted_and_normal_rejected(gateway: LocalStack) -> None:
    result = send(gateway, "--kubernetes-events", str(CORPUS), "--token", gateway.gateway_token)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    events = json.loads(CORPUS.read_text())["items"]
    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        if event["type"] == "Warning":
            assert row[2] in ("201", "202")
            assert row[3] in ("created", "duplicate")
            assert row[4].startswith("request "), "the RemediationRequest id"
        else:
            assert row[2] == "400"
            assert row[3] == "rejected"
            assert "Warning" in row[4]
    assert result.stdout.rstrip().endswith(
        f"sent {len(events)}: {len(events) - 1} accepted, 1 rejected, 0 failed"
    )

    again = table_rows(
        send(gateway, "--kubernetes-events", str(CORPUS), "--token", gateway.gateway_token).stdout
    )
    assert [r[3] for r in again if r[2] != "400"] == ["duplicate"] * (len(events) - 1)
    assert [r[4] for r in again] == [r[4] for r in rows], "the same requests"


def test_a_refused_token_stops_with_one_line(gateway: LocalStack) -> None:
    result = send(gateway, "--kubernetes-events", str(CORPUS), "--token", "not-the-token")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().startswith("error: the gateway refused the token (401: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_alertmanager_webhooks_are_sent_whole(gateway: LocalStack, tmp_path: Path) -> None:
    (batch,) = batches("all-new", 3)
    payload = json.loads(webhook_v4(batch).replace("@@N@@", tmp_path.name))
    file = tmp_path / "webhook.json"
    file.write_text(json.dumps([payload]))
    result = send(gateway, "--alerts", str(file), "--token", gateway.gateway_token)
    assert result.returncode == 0, result.stderr
    (row,) = table_rows(result.stdout)
    assert row[1] == "firing 3 alert(s): KubePodCrashLooping"
    assert row[2] == "201"
    assert row[3] == "created x3"


def test_the_bench_measures_the_gateway_through_its_target(gateway: LocalStack, tmp_path: Path) -> None:
    master = gateway.current_master()
    assert master is not None
    target = IngestTarget(
        "gateway",
        gateway.url("gateway") + WEBHOOK_PATH,
        webhook_v4,
        headers=(f"Authorization: Bearer {gateway.gateway_token}",),
        redis=master,
        redis_password=gateway.redis_password(master[1]),
    )
    # Paced under the stack's rate limit (100/s per source), lightly: this checks the hook, not speed.
    row = measure(
        target, SHAPES[0], "repeat-heavy", Load(duration_s=1, connections=2, threads=1), tmp_path, 40
    )
    assert (row.non_2xx, row.socket_errors) == (0, 0)
    assert 0 < row.requests_per_s <= 45
    assert row.redis_commands_per_alert is not None
    assert row.redis_commands_per_alert >= 1, "every alert goes through the ingest script"
