"""A process is alive (and stoppable) as soon as spawn() returns, even mid-exec."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from kubernaut_tools.localstack import patroni
from kubernaut_tools.localstack.processes import has_exited, is_alive, spawn, stop, wait_until
from tests.conftest import TEST_PORT_OFFSET

pytestmark = pytest.mark.stack


def test_a_spawned_process_is_alive_at_once_and_stop_ends_it(tmp_path: Path) -> None:
    port = 15461 + TEST_PORT_OFFSET + 200  # an etcd of its own, beside the stacks' ports
    for i in range(10):
        argv = patroni.etcd_argv(tmp_path / f"data-{i}", "127.0.0.1", port, port + 1, f"race-{i}")
        rec = spawn("etcd", argv, marker=f"--initial-cluster-token=race-{i}", log=tmp_path / "etcd.log")
        try:
            assert is_alive(rec)
            assert not has_exited(rec)
        finally:
            stop(rec)
        # Exiting, its command line empties before it is reaped: wait for that, boundedly.
        wait_until(partial(has_exited, rec), timeout=5, what="etcd to exit")
