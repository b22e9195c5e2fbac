"""`kubernaut up`, `status --json` and `down` as a user runs them, on a stack of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_PORT_OFFSET

pytestmark = pytest.mark.stack

OFFSET = TEST_PORT_OFFSET + 100


def kubernaut(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", *args, "--run-dir", str(run_dir), "--port-offset", str(OFFSET)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def stack_processes(run_dir: Path, ports: list[int]) -> list[str]:
    """Command lines of live processes that belong to this stack (its run directory or ports)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state == "Z" or "pytest" in cmd:
            continue
        if str(run_dir) in cmd or any(f":{p}" in cmd for p in ports):
            found.append(cmd)
    return found


def test_up_status_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    try:
        started = kubernaut("up", run_dir=run_dir)
        assert started.returncode == 0, started.stderr
        assert "gateway-master" not in started.stderr

        st = kubernaut("status", "--json", run_dir=run_dir)
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        gw = status["redis_gateway"]
        assert gw["master"] == f"127.0.0.1:{16379 + OFFSET}"
        assert [r["alive"] for r in gw["replicas"]] == [True, True]
        assert [s["alive"] for s in gw["sentinels"]] == [True, True, True]
        assert gw["quorum"] == 2
        assert status["redis_context"]["addr"] == f"127.0.0.1:{16390 + OFFSET}"
        assert status["postgres"]["dsn"].endswith(f"@127.0.0.1:{15432 + OFFSET}/kubernaut")

        # The seed's own verification, with Debian's redis-cli and the sentinel password from `status`.
        refused = subprocess.run(
            ["redis-cli", "-p", str(16379 + OFFSET), "ping"], capture_output=True, text=True, check=False
        )
        assert "NOAUTH" in refused.stdout + refused.stderr
        auth_env = {**os.environ, "REDISCLI_AUTH": gw["sentinel_password"]}
        seed_check = subprocess.run(
            ["redis-cli", "-p", str(26379 + OFFSET), "sentinel", "master", "gateway-master"],
            capture_output=True,
            text=True,
            check=True,
            env=auth_env,
        ).stdout.split()
        fields = dict(zip(seed_check[::2], seed_check[1::2], strict=False))
        assert fields["num-slaves"] == "2"
        assert fields["num-other-sentinels"] == "2"
        assert fields["quorum"] == "2"
        assert fields["down-after-milliseconds"] == "5000"
        assert fields["failover-timeout"] == "10000"

        # Issue 13's check: the Context-API answers only with the token `status` shows.
        incidents = status["context_api"]["url"] + "/api/v1/incidents"
        assert httpx.get(incidents, timeout=10).status_code == 401
        bearer = {"authorization": f"Bearer {status['context_api']['token']}"}
        assert httpx.get(incidents, headers=bearer, timeout=10).status_code == 200

        again = kubernaut("up", run_dir=run_dir)
        assert again.returncode == 0, again.stderr
        assert "started" not in again.stderr, "a second `up` must start nothing"
        pids = {
            json.dumps(v) for v in json.loads(kubernaut("status", "--json", run_dir=run_dir).stdout).values()
        }
        assert pids == {json.dumps(v) for v in status.values()}
    finally:
        stopped = kubernaut("down", run_dir=run_dir)
        kubernaut("down", "--purge", run_dir=run_dir)
    assert stopped.returncode == 0, stopped.stderr
    ports = [16379, 16380, 16381, 26379, 26380, 26381, 16390, 15432, 8080, 8091]
    assert stack_processes(run_dir, [p + OFFSET for p in ports]) == []
    assert not run_dir.exists()
