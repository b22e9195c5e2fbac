"""The failure scenarios: each injects one fault into the local stack, then lets it heal.

They block (process signals, Sentinel polling), so the runner calls them in a thread while the load runs.
Outage lengths are part of a scenario's definition; everything else waits on real state.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from kubernaut_tools.drill.postgres_faults import POSTGRES_HA_SCENARIOS
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack import redis_servers as rs
from kubernaut_tools.localstack.processes import wait_until

OUTAGE_S = 3.0
FAILOVER_TIMEOUT_S = 60.0
HEAL_TIMEOUT_S = 90.0


@dataclass
class FaultLog:
    """What the scenario did and when (``time.monotonic()``)."""

    fault_at: float | None = None
    new_master_at: float | None = None
    healed_at: float | None = None
    old_master: str | None = None
    new_master: str | None = None
    postgres_failover_at: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def sentinel_failover_s(self) -> float | None:
        if self.fault_at is None or self.new_master_at is None:
            return None
        return round(self.new_master_at - self.fault_at, 3)

    @property
    def postgres_failover_s(self) -> float | None:
        if self.fault_at is None or self.postgres_failover_at is None:
            return None
        return round(self.postgres_failover_at - self.fault_at, 3)


def _heal(stack: LocalStack, log: FaultLog) -> None:
    stack.up(timeout=HEAL_TIMEOUT_S)
    log.healed_at = time.monotonic()


def _fail_over(stack: LocalStack, log: FaultLog, sig: signal.Signals) -> str:
    name, master = stack.master_node()
    log.old_master = f"{master[0]}:{master[1]}"
    log.fault_at = time.monotonic()
    if not stack.signal_component(name, sig):
        raise RuntimeError(f"{name} is not running")
    new = stack.wait_for_new_master(master, timeout=FAILOVER_TIMEOUT_S)
    log.new_master_at = time.monotonic()
    log.new_master = f"{new[0]}:{new[1]}"
    return name


def replica_down(stack: LocalStack, log: FaultLog) -> None:
    _, master = stack.master_node()
    replica = next(n.name for n in stack.nodes() if n.port != master[1])
    log.fault_at = time.monotonic()
    stack.stop_component(replica, sig=signal.SIGKILL)
    time.sleep(OUTAGE_S)
    _heal(stack, log)


def master_kill(stack: LocalStack, log: FaultLog) -> None:
    _fail_over(stack, log, signal.SIGKILL)
    _heal(stack, log)


def master_hang(stack: LocalStack, log: FaultLog) -> None:
    name = _fail_over(stack, log, signal.SIGSTOP)
    stack.signal_component(name, signal.SIGCONT)
    _heal(stack, log)


def sentinel_down(stack: LocalStack, log: FaultLog) -> None:
    stack.stop_component(stack.sentinels()[0].name, sig=signal.SIGKILL)
    _fail_over(stack, log, signal.SIGKILL)
    _heal(stack, log)


def all_redis_down(stack: LocalStack, log: FaultLog) -> None:
    log.fault_at = time.monotonic()
    for node in stack.nodes():
        stack.stop_component(node.name, sig=signal.SIGKILL)
    time.sleep(OUTAGE_S)
    _heal(stack, log)


def old_master_returns(stack: LocalStack, log: FaultLog) -> None:
    name = _fail_over(stack, log, signal.SIGKILL)
    _heal(stack, log)
    port = stack.endpoint(name).port
    info = rs.replication(stack.topology.host, port, stack.redis_password(port))
    log.checks["old_master_is_replica"] = info is not None and info.get("role") == "slave"
    try:
        with rs.client(stack.topology.host, port, stack.redis_password(port)) as c:
            c.set("gw:drill:write-probe", "1")
        log.checks["old_master_refuses_writes"] = False
    except redis.ReadOnlyError:
        log.checks["old_master_refuses_writes"] = True


def context_redis_kill(stack: LocalStack, log: FaultLog) -> None:
    log.fault_at = time.monotonic()
    stack.stop_component("redis-context", sig=signal.SIGKILL)
    time.sleep(OUTAGE_S)
    _heal(stack, log)


def postgres_restart(stack: LocalStack, log: FaultLog) -> None:
    log.fault_at = time.monotonic()
    stack.stop_component("postgres", sig=signal.SIGINT)
    wait_until(lambda: stack.record("postgres") is None, timeout=30, what="PostgreSQL to stop")
    time.sleep(OUTAGE_S)
    _heal(stack, log)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    inject: Callable[[LocalStack, FaultLog], None]
    postgres: str = "any"  # "single" | "ha": the PostgreSQL mode the scenario needs; "any" for both

    def runs_on(self, stack: LocalStack) -> bool:
        return self.postgres == "any" or (self.postgres == "ha") == stack.postgres_ha


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("replica-down", "kill one replica, restart it", replica_down),
        Scenario("master-kill", "kill -9 the master; Sentinel promotes a replica", master_kill),
        Scenario(
            "master-hang", "SIGSTOP the master until Sentinel promotes a replica, then SIGCONT", master_hang
        ),
        Scenario(
            "sentinel-down",
            "kill one sentinel, then the master: quorum 2 of 3 still fails over",
            sentinel_down,
        ),
        Scenario("all-redis-down", "kill all three Redis nodes, restart them", all_redis_down),
        Scenario(
            "old-master-returns",
            "kill the master, bring it back: it rejoins as a read-only replica",
            old_master_returns,
        ),
        Scenario("context-redis-kill", "kill the Context-API's Redis, restart it", context_redis_kill),
        Scenario("postgres-restart", "stop PostgreSQL, start it again", postgres_restart, "single"),
        *(Scenario(name, summary, inject, "ha") for name, summary, inject in POSTGRES_HA_SCENARIOS),
    )
}
