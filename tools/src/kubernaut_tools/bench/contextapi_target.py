"""Context-API replicas for the read benchmarks: real ``kubernaut context-api`` processes on the benchmark's
stack, each with a configuration of its own (port, cache tiers, Redis) derived from the stack's, recorded
in the stack's process table and stopped by PID. Also the seeded history they serve, the warm-up walk over
every key, and the cache counters read from a replica's own ``/metrics``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubernaut.store.migrate import migrate_dsn
from kubernaut.store.schema import REQUESTS
from kubernaut_tools.bench.errors import BenchError
from kubernaut_tools.bench.wrk import Load, get_keys
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.launch import http_ok, last_line
from kubernaut_tools.localstack.processes import ProcessRecord, is_alive, wait_until
from kubernaut_tools.seed import SeedReport, seed_history

# L2 reduced to one entry that ages out within a millisecond: every request passes L2 and goes to L1.
TINY_L2: dict[str, Any] = {"max_entries": 1, "ttl_s": 0.001}
# What a replica logs each time a Redis failure makes it stop using L1 (contextapi/cache/l1.py).
L1_FAILURE_LOG = "context-api redis unavailable"
# Long enough for every entry warmed at the start to outlive the whole benchmark.
LONG_TTL_S = 3600
# The default PostgreSQL pool of a replica: more would only queue for it.
WALK_CONNECTIONS = 10


@dataclass(frozen=True)
class CacheCounters:
    """A replica's cache counters: ``context_api_cache_{hits,misses}_total`` by tier, and the
    invalidations PostgreSQL announced (``context_api_invalidations_total{origin="postgres"}``)."""

    l1_hits: float = 0
    l1_misses: float = 0
    l2_hits: float = 0
    l2_misses: float = 0
    postgres_invalidations: float = 0

    @classmethod
    def from_exposition(cls, text: str) -> CacheCounters:
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in ("context_api_cache_hits_total", "context_api_cache_misses_total"):
                    kind = "hits" if "hits" in s.name else "misses"
                    values[f"{s.labels.get('tier')}_{kind}"] = s.value
                elif s.name == "context_api_invalidations_total" and s.labels.get("origin") == "postgres":
                    values["postgres_invalidations"] = s.value
        return cls(**{f.name: values.get(f.name, 0.0) for f in fields(cls)})

    def __sub__(self, other: CacheCounters) -> CacheCounters:
        return CacheCounters(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def hit_rate(self, tier: str) -> float | None:
        """Hits over lookups of ``tier`` ("l1" or "l2"); None without lookups."""
        hits, misses = getattr(self, f"{tier}_hits"), getattr(self, f"{tier}_misses")
        return hits / (hits + misses) if hits + misses else None


@dataclass(frozen=True)
class Replica:
    name: str
    url: str
    record: ProcessRecord
    log: Path
    token: str  # a read-scope bearer token

    @property
    def auth(self) -> tuple[str, ...]:
        """wrk's --header values."""
        return (f"Authorization: Bearer {self.token}",)

    def l1_failures(self) -> int:
        """How often the replica stopped using its Redis (its breaker left CLOSED), from its log."""
        return sum(L1_FAILURE_LOG in line for line in self.log.read_text(errors="replace").splitlines())

    def counters(self) -> CacheCounters:
        resp = httpx.get(f"{self.url}/metrics", timeout=10)
        resp.raise_for_status()
        return CacheCounters.from_exposition(resp.text)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _command(stack: LocalStack, name: str, port: int, context_api: dict[str, Any]) -> tuple[list[str], str]:
    """The argv and process marker of a replica with the stack's configuration, ``context_api`` merged into
    its section."""
    config = yaml.safe_load(stack.run.config_file.read_text())
    section = _merge(
        config["context_api"], {**context_api, "http": {"host": stack.topology.host, "port": port}}
    )
    config["context_api"] = section
    comp = stack.run.component_dir(name)
    comp.mkdir(parents=True, exist_ok=True)
    conf = comp / "config.yaml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    conf.chmod(0o600)
    return [sys.executable, "-m", "kubernaut", "context-api", "--config", str(conf)], str(conf)


def _last_line(log: Path) -> str:
    return last_line(log) or "no output"


@contextmanager
def replica(stack: LocalStack, name: str, port: int, context_api: dict[str, Any]) -> Iterator[Replica]:
    """A running replica, ready (``/readyz`` 200) when yielded, stopped by PID afterwards."""
    argv, marker = _command(stack, name, port, context_api)
    url = f"http://{stack.topology.addr(port)}"
    try:
        rec = stack.launcher.launch(
            name,
            argv,
            marker=marker,
            ready=partial(http_ok, f"{url}/readyz"),
            timeout=60,
            what=f"{name} at {url}",
        )
        yield Replica(name, url, rec, stack.run.log(name), stack.context_api_read_token)
    finally:
        stack.launcher.retire(name)


def refusal(stack: LocalStack, name: str, port: int, context_api: dict[str, Any], expect: str) -> str:
    """Start a replica that must refuse to run; return its log line containing ``expect``."""
    argv, marker = _command(stack, name, port, context_api)
    rec = stack.launcher.spawn(name, argv, marker)
    log = stack.run.log(name)
    try:
        wait_until(lambda: not is_alive(rec), timeout=60, what=f"{name} to refuse and exit")
    except TimeoutError:
        raise BenchError(f"{name} did not refuse to start: {_last_line(log)}") from None
    finally:
        stack.launcher.retire(name)
    said = next((ln.strip() for ln in log.read_text(errors="replace").splitlines() if expect in ln), None)
    if said is None:
        raise BenchError(f"{name} exited without saying {expect!r}: {_last_line(log)}")
    return said


async def _seed(dsn: str, incidents: int, seed: int) -> tuple[list[int], SeedReport]:
    await migrate_dsn(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {REQUESTS} RESTART IDENTITY CASCADE")
        report = await seed_history(conn, incidents, seed=seed)
        ids = [r["id"] for r in await conn.fetch(f"SELECT id FROM {REQUESTS} ORDER BY id")]
    finally:
        await conn.close()
    return ids, report


def seed(stack: LocalStack, incidents: int, seed: int) -> tuple[list[int], SeedReport]:
    """Exactly ``incidents`` seeded incidents in the stack's database (as ``kubernaut seed-history``
    writes them, after emptying it); their ids and the seeding report."""
    return asyncio.run(_seed(stack.postgres_dsn, incidents, seed))


def walk_all(
    target: Replica, key_file: Path, keys: int, log: Callable[[str], None], chunk_s: float = 15
) -> float:
    """Request every key of ``key_file`` once through ``target`` (wrk walks it in order on as many
    connections as a replica has PostgreSQL connections, in chunks of ``chunk_s``); return the seconds
    it took."""
    position, seconds = 1, 0.0
    while position <= keys:
        result = get_keys(
            target.url,
            key_file,
            Load(chunk_s, connections=WALK_CONNECTIONS, threads=1),
            walk_from=position,
            headers=target.auth,
        )
        if result.position is None or result.position <= position:
            raise BenchError(f"warming {target.name} made no progress at key {position:,}")
        if result.non_2xx or result.socket_errors:
            raise BenchError(f"{target.name} failed {result.non_2xx + result.socket_errors} warm-up requests")
        position, seconds = result.position, seconds + result.duration_s
        log(f"warming {target.name}: {min(position - 1, keys):,} of {keys:,} keys requested")
    return seconds


def l1_entries(server: tuple[str, int], prefix: str, password: str | None) -> int:
    """Cache entries (not tag sets) under ``prefix`` on a Redis server."""
    with redis.Redis(*server, password=password, socket_timeout=10) as r:
        return sum(1 for _ in r.scan_iter(match=f"{prefix}c:*", count=10_000))
