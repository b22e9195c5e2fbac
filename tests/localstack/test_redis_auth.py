"""Every Redis server and sentinel of the local stack refuses clients without its password (issue 13,
item 8), and the seed's own check still runs with the sentinel password from `status`."""

from __future__ import annotations

import os
import subprocess

import pytest
import redis

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack import redis_servers as rs


def all_ports(stack: LocalStack) -> list[int]:
    t = stack.topology
    return [*t.redis_gateway_ports, *t.sentinel_ports, t.redis_context_port]


def redis_cli(port: int, *args: str, auth: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if auth is not None:
        env["REDISCLI_AUTH"] = auth
    proc = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    return proc.stdout + proc.stderr


def test_no_server_answers_without_its_password(stack: LocalStack) -> None:
    for port in all_ports(stack):
        assert "NOAUTH" in redis_cli(port, "ping"), port
        with pytest.raises(redis.AuthenticationError), rs.client(stack.topology.host, port) as c:
            c.ping()
        with pytest.raises(redis.AuthenticationError), rs.client(stack.topology.host, port, "wrong") as c:
            c.ping()
        assert rs.ping(stack.topology.host, port, stack.redis_password(port)), port


def test_a_sentinel_refuses_failover_and_reconfiguration_without_its_password(stack: LocalStack) -> None:
    port = stack.topology.sentinel_ports[0]
    assert "NOAUTH" in redis_cli(port, "sentinel", "failover", "gateway-master")
    assert "NOAUTH" in redis_cli(port, "sentinel", "set", "gateway-master", "quorum", "1")
    # The node password is not the sentinels' password.
    assert "WRONGPASS" in redis_cli(port, "ping", auth=stack.redis_gateway_password)


def test_the_seed_check_runs_with_the_sentinel_password_from_status(stack: LocalStack) -> None:
    status = stack.status()
    gw, ctx = status.redis_gateway, status.redis_context
    passwords = (gw.password, gw.sentinel_password, ctx.password)
    assert all(passwords)
    assert len(set(passwords)) == 3, "each Redis role has its own secret"
    out = redis_cli(
        stack.topology.sentinel_ports[0], "sentinel", "master", "gateway-master", auth=passwords[1]
    )
    words = out.split()
    fields = dict(zip(words[::2], words[1::2], strict=False))
    assert (fields["name"], fields["num-slaves"], fields["num-other-sentinels"]) == (
        "gateway-master",
        "2",
        "2",
    )
    assert "flags" in fields
    assert "down" not in fields["flags"], "the sentinels reach the nodes with auth-pass"


def test_each_service_user_runs_only_its_commands(stack: LocalStack) -> None:
    t = stack.topology
    master = stack.current_master()
    assert master is not None
    status = stack.status()
    gw_pw = status.redis_gateway.users["gateway"]
    ctx_pw = status.redis_context.users["context-api"]
    with redis.Redis(host=t.host, port=master[1], username="gateway", password=gw_pw) as gw:
        assert gw.ping()
        assert gw.script_load("return redis.call('TIME')[1]")
        for refused in ["FLUSHALL", "CONFIG GET maxmemory", "KEYS *", "SHUTDOWN", "REPLICAOF NO ONE"]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                gw.execute_command(*refused.split())
    with redis.Redis(host=t.host, port=t.redis_context_port, username="context-api", password=ctx_pw) as ctx:
        assert ctx.set("ctx-acl-probe", "1", ex=5)
        for refused in ["FLUSHALL", "CONFIG SET maxmemory 1", "KEYS *", "ACL LIST", "SHUTDOWN"]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                ctx.execute_command(*refused.split())
    # Isolation: neither service's user exists on the other service's Redis.
    with (
        pytest.raises(redis.AuthenticationError),
        redis.Redis(host=t.host, port=t.redis_context_port, username="gateway", password=gw_pw) as r,
    ):
        r.ping()
    with (
        pytest.raises(redis.AuthenticationError),
        redis.Redis(host=t.host, port=master[1], username="context-api", password=ctx_pw) as r,
    ):
        r.ping()
