"""Test helpers for the gateway: payloads, an in-process gateway on the real stack, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import asyncpg
import httpx
import redis.asyncio as aioredis

from kubernaut.config import Settings
from kubernaut.gateway.app import create_app, fast_path
from kubernaut.gateway.ingest_protocol import storm_group_key
from kubernaut.httpserver import default_workers
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import ProcessRecord, spawn, stop, wait_until

PROMETHEUS = "/api/v1/signals/prometheus"
EVENTS = "/api/v1/signals/kubernetes-event"


def unique(name: str) -> str:
    """An alert name no other test uses, so PostgreSQL rows can be counted per test."""
    return f"{name}{uuid.uuid4().hex[:10]}"


def alert(
    name: str,
    *,
    pod: str | None = "api-0",
    namespace: str = "shop",
    status: str = "firing",
    severity: str = "warning",
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": name, "namespace": namespace, "severity": severity, **labels}
    if pod is not None:
        all_labels["pod"] = pod
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} on {pod}"},
        "startsAt": "2025-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "0123456789abcdef",
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "receiver": "kubernaut",
        "status": "firing",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def event(
    reason: str, *, type_: str = "Warning", name: str = "api-0", namespace: str = "shop"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.17a", "namespace": namespace},
        "type": type_,
        "reason": reason,
        "message": f"{reason} happened",
        "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace},
        "count": 1,
    }


def with_gateway(settings: Settings, **updates: Any) -> Settings:
    """``settings`` with ``gateway`` fields replaced; nested sections take dicts of their own fields."""
    gw = settings.gateway
    resolved: dict[str, Any] = {}
    for key, value in updates.items():
        current = getattr(gw, key)
        resolved[key] = (
            current.model_copy(update=value)
            if isinstance(value, dict) and hasattr(current, "model_copy")
            else value
        )
    return settings.model_copy(update={"gateway": gw.model_copy(update=resolved)})


def isolated(stack: LocalStack, **updates: Any) -> Settings:
    """The stack's gateway settings with a key prefix of its own (Redis state of one test only)."""
    return with_gateway(stack.settings(), key_prefix=f"gwt:{uuid.uuid4().hex[:8]}:", **updates)


@contextlib.asynccontextmanager
async def in_process(settings: Settings, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan run, reached (as served: fast path first) through httpx's ASGI
    transport."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=fast_path(app), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers) as c:
            yield c


def metric(text: str, name: str, **labels: str) -> float:
    """A sample of ``name`` with ``labels`` in /metrics ``text``; AssertionError when not exported."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not exported")


async def connect_db(stack: LocalStack) -> asyncpg.Connection:
    return await asyncpg.connect(stack.postgres_dsn)


async def fetch_rows(stack: LocalStack, sql: str, *args: object) -> list[dict[str, Any]]:
    """Run one query on a connection of its own; the rows as dicts."""
    db = await connect_db(stack)
    try:
        return [dict(r) for r in await db.fetch(sql, *args)]
    finally:
        await db.close()


async def until_redis(
    stack: LocalStack, key: str, done: Callable[[bytes | None], bool], timeout_s: float = 30
) -> None:
    """Until the gateway master's value of ``key`` satisfies ``done``."""
    master = stack.current_master()
    assert master is not None, "no gateway Redis master"
    redis = aioredis.Redis(**stack.redis_auth(master[1]))
    try:
        deadline = time.monotonic() + timeout_s
        while not done(value := cast(bytes | None, await redis.get(key))):
            assert time.monotonic() < deadline, f"{key} stayed {value!r}"
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


async def wait_bound(stack: LocalStack, fingerprint: str, prefix: str = "gw:", timeout_s: float = 30) -> None:
    """Until the master's dedup entry of ``fingerprint`` holds a request id (binds are batched): only then
    does a repeat stay in Redis, counted by the script, instead of going to PostgreSQL again."""
    await until_redis(stack, f"{prefix}dd:{fingerprint}", lambda v: (v or b"").isdigit(), timeout_s)


async def until_storm_bound(
    stack: LocalStack, prefix: str, name: str, namespace: str, storm_id: int, timeout_s: float = 30
) -> None:
    """Until storm request ``storm_id`` is bound to its window (its new members then join in Redis)."""
    master = stack.current_master()
    assert master is not None, "no gateway Redis master"
    redis = aioredis.Redis(**stack.redis_auth(master[1]))
    key, suffix = storm_group_key(prefix, name, namespace), f":{storm_id}".encode()
    try:
        deadline = time.monotonic() + timeout_s
        while not (bound := cast(bytes | None, await redis.hget(key, "bound")) or b"").endswith(suffix):
            assert time.monotonic() < deadline, f"storm {storm_id} never bound: {bound!r}"
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def gateway_process(stack: LocalStack, name: str, port: int, **env: str) -> Iterator[str]:
    """A real `kubernaut gateway` process on ``port`` with ``KUBERNAUT_GATEWAY__*`` overrides; stopped
    by PID on exit. Yields its base URL."""
    overrides = {f"KUBERNAUT_GATEWAY__{k.upper()}": v for k, v in env.items()}
    overrides["KUBERNAUT_GATEWAY__HTTP__PORT"] = str(port)
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    workers = int(overrides.get("KUBERNAUT_GATEWAY__HTTP__WORKERS") or default_workers())
    log = stack.run.log(name)
    started_at = log.stat().st_size if log.exists() else 0
    record: ProcessRecord = spawn(
        name,
        argv,
        marker="-m kubernaut gateway",
        log=log,
        env={**os.environ, **overrides},
    )
    url = f"http://{stack.topology.host}:{port}"

    def every_worker_started() -> bool:
        # Not just one worker answering: a fault a test applies next must not meet another mid-start.
        with log.open("rb") as f:
            f.seek(started_at)
            return f.read().count(b"Application startup complete") >= workers

    try:
        wait_until(
            lambda: _alive_or_raise(record, stack) and every_worker_started() and ready(url),
            timeout=30,
            interval=0.1,
            what=f"{name} ready",
        )
        yield url
    finally:
        stop(record, sig=signal.SIGTERM)


def _alive_or_raise(record: ProcessRecord, stack: LocalStack) -> bool:
    # Our own child: waitpid says whether it exited (its cmdline is pytest's until exec).
    if os.waitpid(record.pid, os.WNOHANG)[0] == record.pid:
        tail = stack.run.log(record.name).read_text()[-2000:]
        raise RuntimeError(f"{record.name} exited; end of its log:\n{tail}")
    return True


def master_node(stack: LocalStack) -> tuple[tuple[str, int], str]:
    """The gateway group's master: its address and its node's name (to fault it by its PID)."""
    master = stack.current_master()
    assert master is not None, "no gateway Redis master"
    return master, next(n.name for n in stack.nodes() if n.port == master[1])


async def master_keys(stack: LocalStack, pattern: str) -> list[bytes]:
    """The keys matching ``pattern`` on the gateway group's current master."""
    master = stack.current_master()
    assert master is not None
    r = aioredis.Redis(**stack.redis_auth(master[1]))
    try:
        return [k async for k in r.scan_iter(match=pattern)]
    finally:
        await r.aclose()


async def pending_count_keys(stack: LocalStack, prefix: str) -> list[bytes]:
    """The count hash and batches the gateways on ``prefix`` hold in the master."""
    return await master_keys(stack, f"{prefix}count*")


async def until_flushed(stack: LocalStack, prefix: str, within_s: float) -> None:
    """Every count the gateways hold in Redis has been flushed and acknowledged (no batch left)."""
    deadline = time.monotonic() + within_s
    while await pending_count_keys(stack, prefix):
        assert time.monotonic() < deadline, await pending_count_keys(stack, prefix)
        await asyncio.sleep(0.1)
