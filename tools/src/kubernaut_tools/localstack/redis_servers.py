"""Configuration and health of the stack's Redis servers and sentinels (Debian's binaries)."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubernaut_tools.localstack.topology import (
    DOWN_AFTER_MS,
    FAILOVER_TIMEOUT_MS,
    MASTER_NAME,
    PARALLEL_SYNCS,
    QUORUM,
)

# Each service's ACL user may run only the commands its code and Lua scripts use (Redis checks the
# commands a script runs against the caller's user). deploy/kubernetes uses the same lists; the key
# patterns there are the services' prefixes, here every key (tests give each run a prefix of its own).
_CONNECT = "+ping +select +client|setname"  # redis-py's CLIENT SETINFO may fail: it ignores that
GATEWAY_COMMANDS = (
    f"-@all {_CONNECT} +evalsha +script|load +get +set +sadd +wait "
    "+del +exists +getdel +getex +hdel +hget +hgetall +hincrby +hmget +hset +hsetnx +pexpire +rename +time "
    "+lpop +lrange +rpush +zadd +zcard +zrangebyscore +zrem +zremrangebyscore"
)
CONTEXT_API_COMMANDS = (
    f"-@all {_CONNECT} +evalsha +eval +script|load +get +mget +set +sadd +smembers +scan +expire "
    "+unlink +del +incr"
)
GATEWAY_USER = "gateway"
CONTEXT_API_USER = "context-api"

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"


def client(host: str, port: int, password: str | None = None, timeout: float = 0.5) -> redis.Redis:
    """A probe client: one attempt, no hidden retries (redis-py retries with backoff by default)."""
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def ping(host: str, port: int, password: str | None = None) -> bool:
    try:
        with client(host, port, password) as c:
            return bool(c.ping())
    except redis.RedisError:
        return False


def _conf(host: str, port: int, workdir: Path, *settings: str) -> str:
    """A loopback server's file: where it listens and keeps its files, then ``settings``."""
    lines = [f"port {port}", f"bind {host}", "protected-mode no", f"dir {workdir}", *settings]
    return "\n".join(lines) + "\n"


def _checked(value: str) -> str:
    """A password for a config line: the generated secrets are URL-safe; refuse what would break it."""
    if not value or any(c in value for c in "\"'\\ \t\n"):
        raise ValueError("a Redis password must be non-empty, without quotes, backslashes or blanks")
    return value


def _quoted(value: str) -> str:
    return f'"{_checked(value)}"'


def acl_user(name: str, password: str, commands: str) -> str:
    return f"user {name} on >{_checked(password)} ~* resetchannels &* {commands}"


def gateway_node_conf(
    host: str,
    port: int,
    workdir: Path,
    replica_of: tuple[str, int] | None,
    password: str,
    gateway_password: str,
) -> str:
    """A node of the gateway's group: RDB snapshots, no eviction, writes refused without a replica; one
    password for tools, its replication link (masterauth) and the sentinels, the gateway's ACL user."""
    return _conf(
        host,
        port,
        workdir,
        f"requirepass {_quoted(password)}",
        f"masterauth {_quoted(password)}",
        acl_user(GATEWAY_USER, gateway_password, GATEWAY_COMMANDS),
        "dbfilename dump.rdb",
        "save 900 1 300 10 60 10000",
        "appendonly no",
        "maxmemory-policy noeviction",
        # An old master cut off from its replicas stops taking writes after the lag bound.
        "min-replicas-to-write 1",
        "min-replicas-max-lag 10",
        f"replica-announce-ip {host}",
        "replica-serve-stale-data no",
        *([f"replicaof {replica_of[0]} {replica_of[1]}"] if replica_of is not None else []),
    )


def context_conf(host: str, port: int, workdir: Path, password: str, context_api_password: str) -> str:
    """The Context-API's cache: no persistence, bounded memory, evicting only keys with a TTL; the
    password for tools, the Context-API's ACL user."""
    return _conf(
        host,
        port,
        workdir,
        f"requirepass {_quoted(password)}",
        acl_user(CONTEXT_API_USER, context_api_password, CONTEXT_API_COMMANDS),
        'save ""',
        "appendonly no",
        "maxmemory 256mb",
        # volatile-lru: cache entries all carry a TTL; the ownership marker does not and must stay.
        "maxmemory-policy volatile-lru",
    )


def sentinel_conf(
    host: str, port: int, workdir: Path, master: tuple[str, int], password: str, node_password: str
) -> str:
    """A sentinel: ``password`` for its clients and for the other sentinels (they share it),
    ``node_password`` to talk to the group's nodes."""
    return _conf(
        host,
        port,
        workdir,
        f"requirepass {_quoted(password)}",
        f"sentinel announce-ip {host}",
        f"sentinel monitor {MASTER_NAME} {master[0]} {master[1]} {QUORUM}",
        f"sentinel auth-pass {MASTER_NAME} {_quoted(node_password)}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} {PARALLEL_SYNCS}",
    )


def sentinel_conf_matches(
    conf: Path, port: int, node_ports: set[int], password: str, node_password: str
) -> bool:
    """Whether a kept sentinel.conf listens on ``port``, monitors one of ``node_ports`` and carries the
    run directory's current passwords (Sentinel rewrites the file but keeps these lines)."""
    lines = [[w.strip('"') for w in line.split()] for line in conf.read_text().splitlines()]
    listens = ["port", str(port)] in lines
    monitors = any(
        words[:3] == ["sentinel", "monitor", MASTER_NAME] and len(words) > 4 and int(words[4]) in node_ports
        for words in lines
    )
    authenticated = ["requirepass", password] in lines and [
        "sentinel",
        "auth-pass",
        MASTER_NAME,
        node_password,
    ] in lines
    return listens and monitors and authenticated


def sentinel_master(host: str, port: int, password: str | None = None) -> tuple[str, int] | None:
    """The master this sentinel names, or None when it is down or knows none."""
    try:
        with client(host, port, password) as c:
            addr = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
    except redis.RedisError:
        return None
    if not addr:
        return None
    return (str(addr[0]), int(addr[1]))


def sentinel_master_info(host: str, port: int, password: str | None = None) -> dict[str, str] | None:
    try:
        with client(host, port, password) as c:
            raw = c.execute_command("SENTINEL", "master", MASTER_NAME)
    except redis.RedisError:
        return None
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    items = [str(x) for x in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


def replication(host: str, port: int, password: str | None = None) -> dict[str, str] | None:
    try:
        with client(host, port, password) as c:
            info = c.info("replication")
    except redis.RedisError:
        return None
    return {
        k: str(v) if not isinstance(v, dict) else ",".join(f"{a}={b}" for a, b in v.items())
        for k, v in info.items()
    }


def online_replicas(host: str, port: int, password: str | None = None) -> int:
    info = replication(host, port, password)
    if info is None or info.get("role") != "master":
        return 0
    return sum(1 for k, v in info.items() if k.startswith("slave") and "state=online" in v)
