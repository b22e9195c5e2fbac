"""Alerting processes are tracked by PID like the rest of the stack: reported while up, stopped exactly."""

from __future__ import annotations

import pytest

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.launch import http_ok
from kubernaut_tools.localstack.processes import is_alive
from kubernaut_tools.localstack.stack import ALERTING

pytestmark = pytest.mark.e2e


def test_status_reports_alerting_while_running_and_stop_removes_it(stack: LocalStack) -> None:
    stack.up(services=False, alerting=True)
    status = stack.status()
    assert set(status.alerting) == set(ALERTING)
    assert all(p.proc.alive and p.proc.pid for p in status.alerting.values())
    records = [stack.table.get(name) for name in ALERTING]

    assert sorted(stack.stop_alerting()) == sorted(ALERTING)

    assert all(rec is not None and not is_alive(rec) for rec in records)
    assert stack.status().alerting == {}
    assert "alerting" not in stack.status().as_json()
    assert not http_ok(stack.url("prometheus") + "/-/ready")
    assert not http_ok(stack.url("alertmanager") + "/-/ready")
    assert stack.status().redis_gateway.master is not None, "the rest of the stack keeps running"
