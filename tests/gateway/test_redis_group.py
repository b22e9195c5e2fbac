"""The gateway's view of its Redis HA group (``/api/v1/redis-group``) asks the Sentinels with the same
credentials as the gateway's own Sentinel clients (kubernaut.redis.connection.sentinel_client): a
Sentinel with an ACL user answers it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kubernaut.config import SentinelRedis
from kubernaut.gateway.group import redis_group
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import is_alive, spawn, stop, wait_until

USER, PASSWORD = "probe", "sentinel-acl-test"
MASTER = "probe-master"


@pytest.fixture
def acl_sentinel(stack: LocalStack, tmp_path: Path) -> Iterator[int]:
    """A Sentinel whose default user is off; it watches a master that is not there (port 1): what it
    says about the group is enough."""
    port = stack.topology.sentinel_ports[0] + 130
    # Sentinel rewrites its command line to "redis-sentinel 127.0.0.1:<port> [sentinel]" once it listens:
    # only the port is in it before and after, so the port is the marker (as for the stack's own).
    conf = tmp_path / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 1 2\n"
        f"user default off\nuser {USER} on >{PASSWORD} +@all\n"
    )
    rec = spawn(
        "sentinel-acl", ["/usr/bin/redis-sentinel", str(conf)], marker=str(port), log=tmp_path / "log"
    )

    def up() -> bool:
        if not is_alive(rec):
            raise RuntimeError((tmp_path / "log").read_text()[-1500:])
        try:
            with redis.Redis(port=port, username=USER, password=PASSWORD, socket_timeout=1) as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.1, what="redis-sentinel with an ACL user")
        yield port
    finally:
        stop(rec, sig=signal.SIGTERM)


async def test_the_group_view_logs_in_as_the_sentinel_user(acl_sentinel: int) -> None:
    settings = SentinelRedis.model_validate(
        {
            "sentinels": [f"127.0.0.1:{acl_sentinel}"],
            "master_name": MASTER,
            "sentinel_username": USER,
            "sentinel_password": PASSWORD,
        }
    )
    group = await redis_group(settings)
    assert group.answered_by == f"127.0.0.1:{acl_sentinel}"
    assert group.master == "127.0.0.1:1"
    assert group.quorum == 2
    # Without the user (the default user is off) the Sentinel does not answer: shown as unreachable.
    anonymous = await redis_group(settings.model_copy(update={"sentinel_username": None}))
    assert anonymous.answered_by is None
    assert [s.flags for s in anonymous.sentinels] == ["unreachable"]
