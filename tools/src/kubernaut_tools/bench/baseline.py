"""Alertmanager 0.25 (Debian) as the ingest baseline: it takes alerts on ``POST /api/v2/alerts``, groups
and routes them like any deployment, to a receiver without integrations (nothing is sent on)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import yaml

from kubernaut_tools.bench.alerts import alertmanager_v2
from kubernaut_tools.bench.ingest import IngestTarget
from kubernaut_tools.localstack import LocalStack, alerting
from kubernaut_tools.localstack.processes import spawn, stop, wait_until

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
    rec = spawn(
        NAME,
        alerting.alertmanager_argv(conf, comp / "data", listen),
        marker=f"--config.file={conf}",
        log=stack.run.log(NAME),
    )
    stack.table.put(rec)
    try:
        wait_until(lambda: alerting.http_ok(f"http://{listen}/-/ready"), timeout=30, what=f"{NAME} ready")
        yield IngestTarget("alertmanager", f"http://{listen}/api/v2/alerts", alertmanager_v2)
    finally:
        stop(rec, sig=signal.SIGTERM)
        stack.table.remove(NAME)
