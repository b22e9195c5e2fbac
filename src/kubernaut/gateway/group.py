"""The gateway's Redis HA group as its Sentinels see it (for operators: the /ui page, `curl`)."""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel
from redis.exceptions import RedisError

from kubernaut.config import SentinelRedis
from kubernaut.redis.connection import sentinel_client

_TIMEOUT_S = 0.5


class Node(BaseModel):
    """A Redis server of the group as Sentinel lists it: address and flags."""

    addr: str
    flags: str


class RedisGroup(BaseModel):
    """The master and replicas as the first answering Sentinel names them; the Sentinels themselves.
    ``config_epoch`` grows by one with each failover."""

    master_name: str
    master: str | None
    master_flags: str | None
    replicas: list[Node]
    sentinels: list[Node]
    quorum: int | None
    config_epoch: int | None
    answered_by: str | None


def _node(state: dict[str, Any]) -> Node:
    flags = state.get("flags", "")
    return Node(
        addr=f"{state['ip']}:{state['port']}", flags=flags if isinstance(flags, str) else ",".join(flags)
    )


async def redis_group(settings: SentinelRedis) -> RedisGroup:
    group = RedisGroup(
        master_name=settings.master_name,
        master=None,
        master_flags=None,
        replicas=[],
        sentinels=[Node(addr=s, flags="unreachable") for s in settings.sentinels],
        quorum=None,
        config_epoch=None,
        answered_by=None,
    )
    for host, port in settings.sentinel_addresses():
        client = sentinel_client(settings, host, port, socket_timeout_s=_TIMEOUT_S, decode=True)
        try:
            master = await client.sentinel_master(settings.master_name)
            replicas = await client.sentinel_slaves(settings.master_name)
            others = await client.sentinel_sentinels(settings.master_name)
        except (RedisError, OSError):
            continue
        finally:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        assert isinstance(master, dict)
        assert isinstance(replicas, list)
        assert isinstance(others, list)
        this = Node(addr=f"{host}:{port}", flags="sentinel")
        return RedisGroup(
            master_name=settings.master_name,
            master=f"{master['ip']}:{master['port']}",
            master_flags=_node(master).flags,
            replicas=[_node(r) for r in replicas],
            sentinels=[this, *(_node(s) for s in others)],
            quorum=int(master["quorum"]),
            config_epoch=int(master["config-epoch"]),
            answered_by=this.addr,
        )
    return group
