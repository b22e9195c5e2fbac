"""The chaos drill's nemesis: applies each planned fault to the local stack by PID, then heals the stack.

The functions block (signals, sleeps that are the fault's own length, waits on real state); the runner
calls them in a thread while the senders run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernaut_tools.drill.chaos_schedule import PlannedFault
from kubernaut_tools.drill.faults import (
    FAILOVER_TIMEOUT_S,
    HEAL_TIMEOUT_S,
    FaultLog,
    _fail_over,
)
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import wait_until


@dataclass
class AppliedFault:
    plan: PlannedFault
    started_at_s: float
    healed_at_s: float
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.plan.kind,
            "planned_at_s": self.plan.at_s,
            "hold_s": self.plan.hold_s,
            "started_at_s": round(self.started_at_s, 3),
            "healed_at_s": round(self.healed_at_s, 3),
            "detail": self.detail,
        }


_HEAL_ATTEMPTS = 3


def _heal(stack: LocalStack) -> None:
    """Restart whatever is down and wait until the group is whole and both services are ready. A start
    that failed (e.g. a process judged gone while it was starting) is tried again: up() is idempotent."""
    for attempt in range(_HEAL_ATTEMPTS):
        try:
            stack.up(timeout=HEAL_TIMEOUT_S)
            break
        except (RuntimeError, TimeoutError):
            if attempt == _HEAL_ATTEMPTS - 1:
                raise
    wait_until(stack.group_ready, timeout=HEAL_TIMEOUT_S, interval=0.2, what="the Redis group to heal")


def _replica(stack: LocalStack, index: int) -> str:
    _, master = stack.master_node()
    replicas = [n.name for n in stack.nodes() if n.port != master[1]]
    return replicas[index % len(replicas)]


def master_kill(stack: LocalStack, plan: PlannedFault) -> str:
    log = FaultLog()
    name = _fail_over(stack, log, signal.SIGKILL)
    _heal(stack)
    return f"killed {name} ({log.old_master}); promoted {log.new_master} after {log.sentinel_failover_s} s"


def master_pause(stack: LocalStack, plan: PlannedFault) -> str:
    name, master = stack.master_node()
    stack.signal_component(name, signal.SIGSTOP)
    try:
        time.sleep(plan.hold_s)
    finally:
        stack.signal_component(name, signal.SIGCONT)
    _heal(stack)
    after = stack.current_master()
    moved = after is not None and after != master
    return f"paused {name} for {plan.hold_s} s; " + ("Sentinel failed over" if moved else "still master")


def _kill_for(stack: LocalStack, name: str, hold_s: float) -> None:
    stack.stop_component(name, sig=signal.SIGKILL)
    time.sleep(hold_s)
    _heal(stack)


def replica_kill(stack: LocalStack, plan: PlannedFault) -> str:
    name = _replica(stack, plan.target)
    _kill_for(stack, name, plan.hold_s)
    return f"killed replica {name} for {plan.hold_s} s"


def sentinel_kill(stack: LocalStack, plan: PlannedFault) -> str:
    name = stack.sentinels()[plan.target % len(stack.sentinels())].name
    _kill_for(stack, name, plan.hold_s)
    return f"killed {name} for {plan.hold_s} s"


def all_redis_restart(stack: LocalStack, plan: PlannedFault) -> str:
    """Every node stopped (SIGTERM: each saves its snapshot), then all started again."""
    for node in stack.nodes():
        stack.stop_component(node.name, sig=signal.SIGTERM)
    time.sleep(plan.hold_s)
    _heal(stack)
    return f"restarted all {len(stack.nodes())} gateway Redis nodes after {plan.hold_s} s"


def postgres_restart(stack: LocalStack, plan: PlannedFault) -> str:
    stack.stop_component("postgres", sig=signal.SIGINT)  # fast shutdown
    wait_until(
        lambda: stack.record("postgres") is None, timeout=FAILOVER_TIMEOUT_S, what="PostgreSQL to stop"
    )
    time.sleep(plan.hold_s)
    _heal(stack)
    return f"fast-stopped PostgreSQL for {plan.hold_s} s"


def gateway_kill(stack: LocalStack, plan: PlannedFault) -> str:
    stack.stop_component("gateway", sig=signal.SIGKILL)
    time.sleep(plan.hold_s)
    _heal(stack)
    return f"kill -9 the gateway, restarted after {plan.hold_s} s"


def partition(stack: LocalStack, plan: PlannedFault) -> str:
    """Cut the gateway off its master (the chaos proxy black-holes); Sentinel still sees it healthy."""
    name, master = stack.master_node()
    stack.partition(name, cut=True)
    try:
        time.sleep(plan.hold_s)
    finally:
        stack.partition(name, cut=False)
    _heal(stack)
    moved = stack.current_master() != master
    return f"gateway cut off {name} for {plan.hold_s} s; " + ("master moved" if moved else "still master")


INJECT: dict[str, Callable[[LocalStack, PlannedFault], str]] = {
    "master-kill": master_kill,
    "master-pause": master_pause,
    "replica-kill": replica_kill,
    "sentinel-kill": sentinel_kill,
    "all-redis-restart": all_redis_restart,
    "postgres-restart": postgres_restart,
    "gateway-kill": gateway_kill,
    "partition": partition,
}


def apply(stack: LocalStack, plan: PlannedFault, t0: float) -> AppliedFault:
    """Wait for the planned time (relative to ``t0``, monotonic), apply the fault, heal."""
    delay = t0 + plan.at_s - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    started = time.monotonic() - t0
    detail = INJECT[plan.kind](stack, plan)
    return AppliedFault(plan, started, time.monotonic() - t0, detail)
