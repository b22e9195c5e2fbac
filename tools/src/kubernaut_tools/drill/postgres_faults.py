"""PostgreSQL HA scenarios (a stack started with ``kubernaut up --postgres-ha``).

``postgres_failover_s`` runs from the fault to the moment another node answers Patroni's ``/primary``
(the running leader, taking writes).
"""

from __future__ import annotations

import time
from typing import Protocol

from kubernaut_tools.localstack import LocalStack, patroni
from kubernaut_tools.localstack.processes import wait_until

FAILOVER_TIMEOUT_S = 60.0
HEAL_TIMEOUT_S = 120.0
OUTAGE_S = 3.0


class Log(Protocol):
    fault_at: float | None
    healed_at: float | None
    old_master: str | None
    new_master: str | None
    postgres_failover_at: float | None
    checks: dict[str, bool]


def _require_ha(stack: LocalStack) -> None:
    if not stack.postgres_ha:
        raise RuntimeError(
            "this scenario needs the HA PostgreSQL: start the stack with `kubernaut up --postgres-ha`"
        )


def _roles(stack: LocalStack) -> tuple[patroni.Node, patroni.Node]:
    """(primary, a standby), waiting until the cluster is whole."""
    _require_ha(stack)
    stack.pg_ha.wait_ready(FAILOVER_TIMEOUT_S, stack.run.logs)
    primary = stack.pg_ha.primary()
    assert primary is not None
    standby = next(n for n in stack.pg_ha.nodes() if n.name != primary.name)
    return primary, standby


def _wait_new_primary(stack: LocalStack, log: Log, old: patroni.Node) -> patroni.Node:
    host = stack.topology.host
    found: list[patroni.Node] = []

    def promoted() -> bool:
        for n in stack.pg_ha.nodes():
            if n.name != old.name and patroni.is_primary(host, n.rest_port):
                found.append(n)
                return True
        return False

    wait_until(
        promoted,
        timeout=FAILOVER_TIMEOUT_S,
        interval=0.05,
        what=f"a PostgreSQL primary other than {old.name}",
    )
    log.postgres_failover_at = time.monotonic()
    log.new_master = stack.topology.addr(found[0].pg_port)
    return found[0]


def _heal(stack: LocalStack, log: Log) -> None:
    stack.up(timeout=HEAL_TIMEOUT_S)
    log.healed_at = time.monotonic()


def _rejoined_as_standby(stack: LocalStack, log: Log, node: patroni.Node) -> None:
    member = next(m for m in stack.pg_ha.members() if m.name == node.name)
    log.checks["old_primary_rejoined_as_standby"] = member.role == "standby"
    log.checks["a_synchronous_standby"] = any(m.sync for m in stack.pg_ha.members())


def primary_kill(stack: LocalStack, log: Log) -> None:
    primary, _ = _roles(stack)
    log.old_master = stack.topology.addr(primary.pg_port)
    log.fault_at = time.monotonic()
    stack.pg_ha.kill_node(primary.name)
    _wait_new_primary(stack, log, primary)
    _heal(stack, log)
    _rejoined_as_standby(stack, log, primary)


def switchover(stack: LocalStack, log: Log) -> None:
    primary, standby = _roles(stack)
    log.old_master = stack.topology.addr(primary.pg_port)
    log.fault_at = time.monotonic()
    patroni.switchover(stack.topology.host, primary.rest_port, primary.name, standby.name)
    _wait_new_primary(stack, log, primary)
    _heal(stack, log)
    _rejoined_as_standby(stack, log, primary)


def standby_kill(stack: LocalStack, log: Log) -> None:
    primary, standby = _roles(stack)
    log.old_master = log.new_master = stack.topology.addr(primary.pg_port)
    log.fault_at = time.monotonic()
    stack.pg_ha.kill_node(standby.name)
    time.sleep(OUTAGE_S)
    _heal(stack, log)
    log.checks["primary_unchanged"] = stack.pg_ha.primary() == primary
    log.checks["a_synchronous_standby"] = any(m.sync for m in stack.pg_ha.members())


# (name, summary, inject): the scenarios that need ``kubernaut up --postgres-ha``.
POSTGRES_HA_SCENARIOS = (
    (
        "postgres-primary-kill",
        "kill -9 the PostgreSQL primary (Patroni and postgres); Patroni promotes the synchronous standby",
        primary_kill,
    ),
    ("postgres-switchover", "a planned switchover through Patroni's REST API", switchover),
    ("postgres-standby-kill", "kill -9 the synchronous standby, restart it", standby_kill),
)
