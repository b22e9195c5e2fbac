"""The local topology is the seed's: 1 master + 2 replicas + 3 sentinels, and it heals on `up`."""

from __future__ import annotations

import signal

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack import redis_servers as rs
from kubernaut_tools.localstack.processes import wait_until


def test_status_reports_the_seed_topology(stack: LocalStack) -> None:
    st = stack.status()
    gw = st.redis_gateway
    assert gw.master is not None
    assert len(gw.replicas) == 2
    assert all(r.proc.alive and r.role == "slave" for r in gw.replicas)
    assert len(gw.sentinels) == 3
    assert all(s.proc.alive for s in gw.sentinels)
    assert gw.quorum == 2
    assert st.postgres.proc.alive
    assert st.redis_context.proc.alive
    assert (st.postgres.dsns.dsn or "").startswith("postgresql://kubernaut:")


def test_sentinels_verify_like_the_seed(stack: LocalStack) -> None:
    for port in stack.topology.sentinel_ports:
        info = rs.sentinel_master_info(stack.topology.host, port, stack.redis_sentinel_password)
        assert info is not None
        assert info["num-slaves"] == "2"
        assert info["num-other-sentinels"] == "2"
        assert info["quorum"] == "2"
        assert info["down-after-milliseconds"] == "5000"
        assert info["failover-timeout"] == "10000"
        assert info["parallel-syncs"] == "1"


def test_up_is_idempotent_and_restarts_a_killed_replica_as_replica(stack: LocalStack) -> None:
    before = {name: rec.pid for name, rec in stack.table.load().items()}
    master = stack.current_master()
    assert master is not None
    replica = next(n for n in stack.nodes() if n.port != master[1])
    stack.stop_component(replica.name, sig=signal.SIGKILL)
    assert stack.record(replica.name) is None

    stack.up(services=False)

    after = {name: rec.pid for name, rec in stack.table.load().items()}
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {replica.name}, "up must start only what was missing"
    info = rs.replication(stack.topology.host, replica.port, stack.redis_gateway_password)
    assert info is not None
    assert info["role"] == "slave"
    assert int(info["master_port"]) == master[1]
    wait_until(stack.group_ready, timeout=30, what="group ready again")
