"""Alertmanager 0.25 (Debian) as the ingest baseline: it takes alerts on ``POST /api/v2/alerts``, groups
and routes them like any deployment, to a receiver without integrations (nothing is sent on)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import yaml

from kubernaut_tools.bench.alerts import alertmanager_v2
from kubernaut_tools.bench.ingest import IngestTarget
from kubernaut_tools.localstack import LocalStack, alerting
from kubernaut_tools.localstack.launch import http_ok

NAME = "bench-alertmanager"
CONFIG = {
    "route": {"receiver": "blackhole", "group_by": ["alertname", "namespace"]},
    "receivers": [{"name": "blackhole"}],
}


@contextmanager
def alertmanager(stack: LocalStack, port: int | None = None) -> Iterator[IngestTarget]:
    """A fresh Alertmanager (on the stack's Alertmanager port by default), in its table, stopped by PID."""
    t = stack.topology
    comp = stack.run.component_dir(NAME)
    shutil.rmtree(comp, ignore_errors=True)
    (comp / "data").mkdir(parents=True)
    conf = comp / "alertmanager.yml"
    conf.write_text(yaml.safe_dump(CONFIG))
    listen = t.addr(port or t.alertmanager_port)
    ready = f"http://{listen}/-/ready"
    try:
        stack.launcher.launch(
            NAME,
            alerting.alertmanager_argv(conf, comp / "data", listen),
            marker=f"--config.file={conf}",
            ready=partial(http_ok, ready),
            timeout=30,
            what=f"{NAME} at {ready}",
        )
        yield IngestTarget("alertmanager", f"http://{listen}/api/v2/alerts", alertmanager_v2)
    finally:
        stack.launcher.retire(NAME)
