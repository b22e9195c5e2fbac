"""Issue 16 "all cores": several gateway worker processes on one port, one truthful /metrics, exact counts.

Which worker serves a connection is the kernel's choice; the tests make it theirs by freezing every
other worker (SIGSTOP) while they send, so each worker provably serves its share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubernaut.gateway.metrics import TALLY_FLUSH_S
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import ProcessRecord, spawn, stop, wait_until
from tests.gateway.helpers import PROMETHEUS, alert, fetch_rows, ready, unique, wait_bound, webhook

pytestmark = pytest.mark.stack


@dataclass
class Workers:
    url: str
    parent: ProcessRecord
    metrics_dir: Path

    def pids(self) -> list[int]:
        return sorted(_workers(self.parent.pid))


def _workers(parent: int) -> set[int]:
    """The uvicorn worker processes under ``parent`` (not multiprocessing's resource tracker)."""
    out = set()
    for task in Path(f"/proc/{parent}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    out.add(int(child))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def two_workers(stack: LocalStack, name: str, port: int, tmp: Path, **env: str) -> Iterator[Workers]:
    overrides = {f"KUBERNAUT_GATEWAY__{k.upper()}": v for k, v in env.items()}
    overrides["KUBERNAUT_GATEWAY__HTTP__PORT"] = str(port)
    overrides["KUBERNAUT_GATEWAY__HTTP__WORKERS"] = "2"
    metrics_dir = tmp / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's file: removed at start
    overrides["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    record = spawn(
        name, argv, marker="-m kubernaut gateway", log=stack.run.log(name), env={**os.environ, **overrides}
    )
    url = f"http://{stack.topology.host}:{port}"
    workers = Workers(url, record, metrics_dir)
    try:
        wait_until(
            lambda: len(workers.pids()) == 2 and ready(url), timeout=60, interval=0.1, what=f"{name} ready"
        )
        yield workers
    finally:
        for pid in workers.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        stop(record, sig=signal.SIGTERM)


@contextlib.contextmanager
def only(workers: Workers, serving: int) -> Iterator[None]:
    """Every worker but ``serving`` frozen: new connections can only be accepted by ``serving``."""
    frozen = [pid for pid in workers.pids() if pid != serving]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)


def _client(url: str, token: str) -> httpx.AsyncClient:
    # No keep-alive: every request is a new connection, accepted by whichever worker is awake.
    return httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=10,
    )


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def _until_merged(gw: httpx.AsyncClient, wanted: tuple[float, ...]) -> None:
    """Until /metrics shows ``wanted``: 202s, 201s, duplicates, and the master available."""
    while True:
        text = (await gw.get("/metrics")).text
        seen = (
            _sample(text, "gateway_http_requests_total", route=PROMETHEUS, status="202"),
            _sample(text, "gateway_http_requests_total", route=PROMETHEUS, status="201"),
            _sample(text, "gateway_signals_received_total", source_type="prometheus", outcome="duplicate"),
            _sample(text, "gateway_redis_available"),
        )
        if seen == wanted:
            return
        await asyncio.sleep(0.1)


async def _requests(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT id, occurrence_count, resolved_at FROM remediation_requests WHERE signal_name = $1",
        name,
    )


async def _until_count(stack: LocalStack, name: str, count: int) -> None:
    while True:
        rows = await _requests(stack, name)
        if rows and rows[0]["occurrence_count"] == count:
            return
        await asyncio.sleep(0.1)


async def test_two_workers_serve_one_port_sum_their_metrics_and_count_exactly(
    stack: LocalStack, tmp_path: Path
) -> None:
    name = unique("TwoWorkers")
    port = stack.topology.gateway_http + 121
    with two_workers(stack, "gateway-workers", port, tmp_path, RATE_LIMIT__MODE="off") as workers:
        assert not (workers.metrics_dir / "counter_1.db").exists()
        pids = workers.pids()
        async with _client(workers.url, stack.gateway_token) as gw:
            first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
            assert first.status_code == 201
            rid = first.json()["signals"][0]["request_id"]
            served = {}
            for pid, repeats in zip(pids, (4, 7), strict=True):
                with only(workers, pid):
                    replies = [await gw.post(PROMETHEUS, json=webhook(alert(name))) for _ in range(repeats)]
                served[pid] = repeats
                assert [r.status_code for r in replies] == [202] * repeats
                assert {r.json()["signals"][0]["request_id"] for r in replies} == {rid}
            # Both at once, racing: still one request.
            concurrent = await asyncio.gather(
                *(gw.post(PROMETHEUS, json=webhook(alert(name))) for _ in range(20))
            )
            assert [r.status_code for r in concurrent] == [202] * 20
            # Each worker adds its tally of accepted webhooks to the merged view within TALLY_FLUSH_S.
            await asyncio.wait_for(_until_merged(gw, (31, 1, 31, 1)), timeout=20 * TALLY_FLUSH_S)
        # Each worker flushes its own batch (its own instance id): every occurrence lands once.
        await asyncio.wait_for(_until_count(stack, name, 32), timeout=20)
    rows = await _requests(stack, name)
    assert len(rows) == 1
    assert rows[0]["occurrence_count"] == 32
    assert rows[0]["resolved_at"] is None


async def test_stopping_the_parent_flushes_every_worker_and_stops_them(
    stack: LocalStack, tmp_path: Path
) -> None:
    name = unique("WorkersStop")
    port = stack.topology.gateway_http + 122
    # Keys of their own: the stack's gateway flushes the shared count hash every second, and could flush
    # these counts before the stop does.
    prefix = f"gws:{uuid.uuid4().hex[:8]}:"
    with two_workers(
        stack,
        "gateway-workers-stop",
        port,
        tmp_path,
        RATE_LIMIT__MODE="off",
        COUNT_FLUSH_INTERVAL_S="3600",
        KEY_PREFIX=prefix,
    ) as workers:
        pids = workers.pids()
        async with _client(workers.url, stack.gateway_token) as gw:
            first = await gw.post(PROMETHEUS, json=webhook(alert(name)))
            assert first.status_code == 201
            # Repeats before the bind go to PostgreSQL and are counted there at once: not what this tests.
            await wait_bound(stack, first.json()["signals"][0]["fingerprint"], prefix)
            for pid in pids:
                with only(workers, pid):
                    for _ in range(3):
                        assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 202
        assert (await _requests(stack, name))[0]["occurrence_count"] < 7
        stop(workers.parent, sig=signal.SIGTERM)
        assert not any(_alive(pid) for pid in pids)
    assert (await _requests(stack, name))[0]["occurrence_count"] == 7


async def test_workers_die_with_a_killed_parent(stack: LocalStack, tmp_path: Path) -> None:
    port = stack.topology.gateway_http + 123
    with two_workers(stack, "gateway-workers-kill", port, tmp_path) as workers:
        pids = workers.pids()
        stop(workers.parent, sig=signal.SIGKILL)
        wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=30, what="the workers to exit")


async def test_two_instances_share_a_port_with_reuse_port_and_count_exactly(
    stack: LocalStack, tmp_path: Path
) -> None:
    """Two independent gateway processes (as two pods would be, but on one port: SO_REUSEPORT)."""
    name = unique("TwoInstances")
    port = stack.topology.gateway_http + 124
    env = {"KUBERNAUT_GATEWAY__HTTP__WORKERS": "1", "KUBERNAUT_GATEWAY__HTTP__REUSE_PORT": "true"}
    env |= {"KUBERNAUT_GATEWAY__HTTP__PORT": str(port), "KUBERNAUT_GATEWAY__RATE_LIMIT__MODE": "off"}
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    url = f"http://{stack.topology.host}:{port}"
    records = []
    try:
        for i in (1, 2):
            log = stack.run.log(f"gateway-instance-{i}")
            records.append(
                spawn(
                    f"gateway-instance-{i}",
                    argv,
                    marker="-m kubernaut gateway",
                    log=log,
                    env={**os.environ, **env},
                )
            )
            wait_until(
                lambda log=log: "Application startup complete" in log.read_text(errors="replace"),  # type: ignore[misc]
                timeout=60,
                interval=0.1,
                what="an instance's start",
            )
        async with _client(url, stack.gateway_token) as gw:
            assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 201
            # New connections, spread by the kernel over both listening sockets (a frozen instance would
            # still be handed its share, so which one serves is not forced here).
            replies = await asyncio.gather(
                *(gw.post(PROMETHEUS, json=webhook(alert(name))) for _ in range(10))
            )
            assert [r.status_code for r in replies] == [202] * 10
        assert all(_alive(r.pid) for r in records)
        await asyncio.wait_for(_until_count(stack, name, 11), timeout=20)
    finally:
        for record in records:
            stop(record, sig=signal.SIGTERM)
    rows = await _requests(stack, name)
    assert [r["occurrence_count"] for r in rows] == [11]


def test_a_worker_that_cannot_start_stops_the_gateway(stack: LocalStack, tmp_path: Path) -> None:
    # PostgreSQL unreachable: each worker's start-up fails; the gateway must exit, not restart them forever.
    env = {
        "KUBERNAUT_GATEWAY__HTTP__WORKERS": "2",
        "KUBERNAUT_GATEWAY__HTTP__PORT": str(stack.topology.gateway_http + 125),
        "KUBERNAUT_POSTGRES__DSN": "postgresql://nobody@127.0.0.1:1/nothing",
        "KUBERNAUT_POSTGRES__GATEWAY_DSN": "postgresql://nobody@127.0.0.1:1/nothing",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    log = stack.run.log("gateway-no-postgres")
    record = spawn(
        "gateway-no-postgres", argv, marker="-m kubernaut gateway", log=log, env={**os.environ, **env}
    )
    try:
        wait_until(
            lambda: os.waitpid(record.pid, os.WNOHANG)[0] == record.pid,
            timeout=60,
            interval=0.2,
            what="the gateway to give up",
        )
        assert "failed to start" in log.read_text(errors="replace")
    finally:
        stop(record, sig=signal.SIGTERM)
