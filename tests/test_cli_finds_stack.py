"""The CLI against the running local stack: it finds the stack's configuration by itself, never prints
the PostgreSQL password, and `up --foreground` tears the whole stack down however it is interrupted."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import yaml

from kubernaut_tools.localstack import LocalStack, Topology, postgres
from kubernaut_tools.localstack.processes import is_alive, wait_until
from tests.conftest import TEST_PORT_OFFSET

FOREGROUND_OFFSET = TEST_PORT_OFFSET + 200
CLI_DB = "cli_local_config"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNAUT_CONFIG", "KUBERNAUT_RUN_DIR")}
    return {**env, **extra}


def _kubernaut(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
async def local_run_dir(stack: LocalStack, tmp_path: Path) -> Path:
    """A run directory as `kubernaut up` leaves it (the stack's config.yaml, its password and all), aimed
    at a database of its own so the seeded history stays out of the other tests' way."""
    t = stack.topology
    admin = await asyncpg.connect(postgres.dsn(t.host, t.postgres_port, stack.postgres_password, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{CLI_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{CLI_DB}"')
    finally:
        await admin.close()
    config = yaml.safe_load(stack.run.config_file.read_text())
    config["postgres"]["dsn"] = postgres.dsn(t.host, t.postgres_port, stack.postgres_password, CLI_DB)
    run_dir = tmp_path / "project" / ".run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


async def _incidents(stack: LocalStack) -> int:
    t = stack.topology
    conn = await asyncpg.connect(postgres.dsn(t.host, t.postgres_port, stack.postgres_password, CLI_DB))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM remediation_requests"))
    finally:
        await conn.close()


async def test_seed_history_and_migrate_find_the_local_stack(stack: LocalStack, local_run_dir: Path) -> None:
    project = local_run_dir.parent
    seeded = _kubernaut("seed-history", "--incidents", "200", cwd=project, env=_env())
    assert seeded.returncode == 0, seeded.stderr
    assert "inserted 200 incidents" in seeded.stdout
    assert str(local_run_dir / "config.yaml") in seeded.stderr
    assert await _incidents(stack) == 200

    elsewhere = project.parent
    by_env = _kubernaut("migrate", cwd=elsewhere, env=_env(KUBERNAUT_RUN_DIR=str(local_run_dir)))
    assert by_env.returncode == 0, by_env.stderr
    assert "applied 0 migration(s)" in by_env.stdout
    by_flag = _kubernaut("migrate", "--run-dir", str(local_run_dir), cwd=elsewhere, env=_env())
    assert by_flag.returncode == 0, by_flag.stderr


def _read_until(pipe: int, marker: bytes, timeout: float) -> bytes:
    """What ``pipe`` carried up to and including the line holding ``marker``."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout:.0f}s; got {seen.decode(errors='replace')!r}"
        ready, _, _ = select.select([pipe], [], [], left)
        if ready:
            chunk = os.read(pipe, 65536)
            assert chunk, f"the output ended before {marker!r}: {seen.decode(errors='replace')!r}"
            seen += chunk
    return seen


@pytest.mark.stack
def test_foreground_up_stops_everything_after_sigint_sighup_and_a_closed_stdout(tmp_path: Path) -> None:
    """`make run` in a multiplexer, Ctrl-C: SIGINT to the group, then SIGHUP as the terminal closes
    and the reading end of stdout/stderr vanishes. Every process of the stack must still be stopped."""
    run_dir = tmp_path / "run"
    stack = LocalStack(run_dir, Topology(offset=FOREGROUND_OFFSET))
    argv = [sys.executable, "-m", "kubernaut", "up", "--foreground", "--run-dir", str(run_dir)]
    argv += ["--port-offset", str(FOREGROUND_OFFSET)]
    proc = subprocess.Popen(
        argv,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        try:
            printed = _read_until(proc.stdout.fileno(), b"password in", timeout=240)
        except AssertionError as err:
            proc.kill()
            raise AssertionError(f"{err}; stderr: {proc.stderr.read().decode(errors='replace')}") from None
        password = stack.postgres_password
        assert password.encode() not in printed
        records = stack.table.load()
        assert len(records) == 10
        assert all(is_alive(r) for r in records.values())

        os.killpg(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGHUP)
        proc.stdout.close()
        proc.stderr.close()

        def all_gone() -> bool:
            return not any(is_alive(r) for r in records.values())

        wait_until(all_gone, timeout=120, interval=0.2, what="every process of the stack to exit")
        assert proc.wait(timeout=30) is not None
        assert stack.table.load() == {}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        stack.destroy()  # its PostgreSQL data may live outside the run directory
