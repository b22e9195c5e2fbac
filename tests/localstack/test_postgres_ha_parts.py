"""Pure parts of the HA PostgreSQL: port layout, Patroni configuration, cluster health, LSN order."""

from __future__ import annotations

import shutil
from itertools import combinations
from pathlib import Path

from kubernaut.contextapi.standby import lsn_int
from kubernaut_tools.localstack import patroni
from kubernaut_tools.localstack.topology import Topology

# The offsets stacks use side by side: a developer's (0), the test default, and per engineer a test, a
# manual and a benchmark stack; the HA test stack (tests/fixtures/ha.py) sits 300 above its test stack.
OFFSETS = [0, 1000, 1300] + [o + d for o in range(2000, 9000, 1000) for d in (0, 300, 500, 700)]


def _ha_ports(t: Topology) -> list[int]:
    return [*t.postgres_ha_ports, *t.patroni_rest_ports, t.etcd_client_port, t.etcd_peer_port]


def _ports(t: Topology) -> list[int]:
    return [
        t.gateway_http,
        t.context_http,
        *t.redis_gateway_ports,
        *t.sentinel_ports,
        t.redis_context_port,
        t.postgres_port,
        *t.postgres_ha_ports,
        *t.patroni_rest_ports,
        t.etcd_client_port,
        t.etcd_peer_port,
        t.prometheus_port,
        t.alertmanager_port,
        t.signal_source_port,
    ]


def test_every_ha_port_shifts_with_the_offset_and_collides_with_no_other_stack() -> None:
    base, shifted = _ports(Topology()), _ports(Topology(offset=123))
    assert [p + 123 for p in base] == shifted
    assert len(set(base)) == len(base)
    for a, b in combinations(OFFSETS, 2):
        for x, y in ((a, b), (b, a)):
            assert not set(_ha_ports(Topology(offset=x))) & set(_ports(Topology(offset=y))), (x, y)


def test_patroni_config_is_synchronous_with_rewind_and_topology_ports() -> None:
    node = patroni.Node("postgres-1", 25442, 25452)
    conf = patroni.node_config(
        node,
        host="127.0.0.1",
        etcd_port=25461,
        data_dir=Path("/d/data"),
        work_dir=Path("/d"),
        superuser_password="s",
        replication_password="r",
    )
    dcs = conf["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert conf["postgresql"]["listen"] == "127.0.0.1:25442"
    assert conf["restapi"]["listen"] == "127.0.0.1:25452"
    assert conf["etcd3"]["hosts"] == ["127.0.0.1:25461"]


def _member(name: str, role: str, state: str) -> dict[str, str]:
    return {"name": name, "role": role, "state": state}


def test_healthy_needs_a_running_leader_and_a_streaming_synchronous_standby() -> None:
    leader, sync = _member("a", "leader", "running"), _member("b", "sync_standby", "streaming")
    assert patroni.healthy({"members": [leader, sync]}, 2)
    assert patroni.leader({"members": [leader, sync]}) == "a"
    assert not patroni.healthy({"members": [leader, _member("b", "replica", "streaming")]}, 2)
    assert not patroni.healthy({"members": [leader]}, 2)
    assert not patroni.healthy({"members": [_member("a", "leader", "stopped"), sync]}, 2)
    assert not patroni.healthy({"members": [leader, _member("b", "sync_standby", "starting")]}, 2)
    assert not patroni.healthy(None, 2)


def test_lsn_order_is_numeric_across_the_high_word() -> None:
    assert lsn_int("0/0") == 0
    assert lsn_int("1/0") > lsn_int("0/FFFFFFFF")
    assert lsn_int("0/A0") > lsn_int("0/9F")


def test_drill_all_picks_the_postgres_scenarios_of_the_stack_mode(tmp_path: Path) -> None:
    from kubernaut_tools.drill.faults import SCENARIOS
    from kubernaut_tools.localstack import LocalStack

    stack = LocalStack(tmp_path)
    single = {n for n, s in SCENARIOS.items() if s.runs_on(stack)}
    stack.run.postgres_ha_marker.parent.mkdir(parents=True, exist_ok=True)
    stack.run.postgres_ha_marker.write_text("patroni\n")
    ha = {n for n, s in SCENARIOS.items() if s.runs_on(stack)}
    pg_ha = {"postgres-primary-kill", "postgres-switchover", "postgres-standby-kill"}
    assert "postgres-restart" in single - ha
    assert pg_ha <= ha - single
    assert "master-kill" in single & ha


def test_a_run_directory_with_the_single_instance_refuses_ha(tmp_path: Path) -> None:
    import pytest

    from kubernaut_tools.localstack import LocalStack

    stack = LocalStack(tmp_path)
    stack.run.component_dir("postgres").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="single PostgreSQL instance"):
        stack.up(postgres_ha=True)
    assert not stack.postgres_ha
    assert not stack.table.load()  # nothing was started


def test_read_dsn_is_optional_and_secret() -> None:
    from kubernaut.config import load_settings

    assert load_settings().postgres.read_dsn is None
    dsn = "postgresql://u:pw@a:1,b:2/db?target_session_attrs=prefer-standby"
    settings = load_settings(postgres={"read_dsn": dsn})
    assert settings.postgres.read_dsn is not None
    assert settings.postgres.read_dsn.get_secret_value() == dsn
    assert "pw" not in repr(settings.postgres)


def test_a_new_cluster_discards_node_data_an_earlier_run_directory_left_behind(tmp_path: Path) -> None:
    """The run directory was wiped (a new test session at the same path) but the nodes' data directories
    in /var/tmp were kept: a fresh etcd means a new cluster, so they go; with etcd's data they stay."""
    from kubernaut_tools.localstack import LocalStack

    stack = LocalStack(tmp_path / "run")
    stack.run.root.mkdir(parents=True)
    ha = stack.pg_ha
    leftovers = []
    for node in ha.nodes():
        data = ha.data_dir(node.name)
        data.mkdir(parents=True, exist_ok=True)
        (data / "PG_VERSION").write_text("15\n")
        leftovers.append(data)
    try:
        etcd_data = stack.run.component_dir("etcd") / "data"
        etcd_data.mkdir(parents=True)
        ha.discard_stale_nodes()  # etcd's data present: the same cluster, restarted
        assert all((d / "PG_VERSION").exists() for d in leftovers)
        etcd_data.rmdir()
        ha.discard_stale_nodes()
        assert not any(d.exists() for d in leftovers)
    finally:
        for d in leftovers:
            shutil.rmtree(d.parent, ignore_errors=True)
