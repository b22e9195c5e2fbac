"""The physical limit under the gateway: ``redis-benchmark`` running one Lua script by EVALSHA on the
gateway group's master, unpipelined and pipelined, plus the Redis commands each call costs."""

from __future__ import annotations

import csv
import io
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import redis

from kubernaut_tools.bench.errors import BenchError

# The measuring tools', Sentinel's and replication's own traffic, not the workload's.
_TOOLING = ("info", "config", "ping", "publish", "replconf")


@dataclass(frozen=True)
class EvalshaRow:
    script: str
    pipeline: int
    clients: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    redis_commands_per_call: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _commandstats(host: str, port: int, password: str | None) -> dict[str, int]:
    """Calls so far per command (``INFO commandstats``; subcommands under their command)."""
    with redis.Redis(host=host, port=port, password=password, socket_timeout=5) as r:
        stats: dict[str, dict[str, int]] = r.info("commandstats")
    calls: dict[str, int] = {}
    for name, s in stats.items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        calls[command] = calls.get(command, 0) + s["calls"]
    return calls


def command_calls(host: str, port: int, only: str | None = None, *, password: str | None = None) -> int:
    """Commands the server has executed so far, the tools' own excluded; only ``only`` when given."""
    calls = _commandstats(host, port, password)
    if only is not None:
        return calls.get(only, 0)
    return sum(n for command, n in calls.items() if command not in _TOOLING)


def parse_csv(output: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from ``redis-benchmark --csv`` of a single command."""
    rows = list(csv.DictReader(io.StringIO(output)))
    if len(rows) != 1:
        raise BenchError(f"redis-benchmark printed {len(rows)} result rows, expected 1: {output[:200]!r}")
    row = rows[0]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])


def evalsha(
    host: str,
    port: int,
    *,
    script: str,
    sha: str,
    keys: list[str],
    args: list[str],
    pipeline: int,
    requests: int,
    clients: int = 50,
    keyspace: int = 100_000,
    password: str | None = None,
) -> EvalshaRow:
    """``EVALSHA sha len(keys) *keys *args``; ``__rand_int__`` in keys/args ranges over ``keyspace``."""
    before = command_calls(host, port, password=password)
    argv = [
        "redis-benchmark",
        *("-h", host, "-p", str(port), "-c", str(clients), "-n", str(requests)),
        # A loopback stack's generated password; redis-benchmark reads it from no environment variable.
        *(("-a", password) if password else ()),
        *("-r", str(keyspace), "-P", str(pipeline), "--csv"),
        *("EVALSHA", sha, str(len(keys)), *keys, *args),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise BenchError(f"redis-benchmark failed: {(proc.stderr or proc.stdout).strip()[:200]}")
    rps, p50, p99 = parse_csv(proc.stdout)
    calls = command_calls(host, port, password=password) - before
    return EvalshaRow(script, pipeline, clients, requests, rps, p50, p99, round(calls / requests, 2))
