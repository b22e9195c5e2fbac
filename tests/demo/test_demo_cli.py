"""`kubernaut demo --json` as a user runs it, on the test stack with alerting: a storm, repeats and a
failover of the gateway's Redis master through the real Prometheus -> Alertmanager -> gateway path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.signal_source import ScenarioSeries, read_signals
from tests.alerting_helpers import Alerts, unique_namespace

pytestmark = pytest.mark.e2e


def demo(run_dir: Path, offset: int) -> subprocess.CompletedProcess[str]:
    argv = ["demo", "--json", "--run-dir", str(run_dir), "--port-offset", str(offset)]
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_demo_loses_nothing_through_a_failover(alerting_stack: LocalStack, alerts: Alerts) -> None:
    stack = alerting_stack
    elsewhere = ScenarioSeries("steady", unique_namespace("not-the-demo"), "web-0")
    alerts.set(elsewhere)  # a series of someone else's: the demo must leave it as it was

    result = demo(stack.run.root, stack.topology.offset)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["lost"] == 0
    assert report["duplicate_open_requests"] == 0
    assert report["passed"] is True
    assert set(report["phases"].values()) == {"done"}
    # 3 alerts, a storm on 15 pods (5 own requests, then 1 aggregated request of 10), 1 during the failover.
    assert report["alerts_fired"] == 19
    assert (report["requests_created"], report["storms"], report["storm_alerts"]) == (10, 1, 10)
    assert report["context_api_incidents"] == 10, "a downstream reader sees the same requests"
    assert report["new_master"] is not None
    assert report["old_master"] != report["new_master"]
    # Not left to chance: the repeating alert is re-notified every 3 s, the blackout lasts Sentinel's 5 s
    # down-after at least.
    assert report["refused_503"] >= 1, "Alertmanager met the blackout and retried"
    assert report["gateway_blackout_s"] > 0
    assert report["sent"] >= report["accepted"] > 0

    assert report["healed"] is True
    assert stack.group_ready()
    stack.wait_service_ready("gateway", timeout=30)
    assert read_signals(stack.run.signals_file) == [elsewhere]


def test_without_a_running_stack_the_demo_says_so_in_one_line(stack: LocalStack, tmp_path: Path) -> None:
    result = demo(tmp_path, stack.topology.offset + 17)  # nothing runs there
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the local stack with alerting is not running")
