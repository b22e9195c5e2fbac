"""HA PostgreSQL for the local stack: Patroni-managed nodes over a single-member etcd.

Patroni (Debian's ``patroni``) owns each node's postgres: it bootstraps the first, clones the others with
pg_basebackup, keeps one synchronous standby (``synchronous_mode``), promotes it when the leader's key in
etcd expires, and rewinds a returning old primary into a standby (``use_pg_rewind``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubernaut_tools.localstack.postgres import SUPERUSER, pg_bin

PATRONI = "/usr/bin/patroni"
ETCD = "/usr/bin/etcd"
SCOPE = "kubernaut"
REPLICATION_USER = "replicator"
ETCD_NAME = "kubernaut-etcd"
# Leader key TTL: a killed primary is replaced within about TTL + LOOP_WAIT seconds. Patroni wants
# loop_wait + 2 * retry_timeout <= ttl.
TTL_S = 10
LOOP_WAIT_S = 1
RETRY_TIMEOUT_S = 4


@dataclass(frozen=True)
class Node:
    name: str
    pg_port: int
    rest_port: int


def etcd_argv(data_dir: Path, host: str, client_port: int, peer_port: int, token: str) -> list[str]:
    peer = f"http://{host}:{peer_port}"
    client = f"http://{host}:{client_port}"
    return [
        ETCD,
        f"--name={ETCD_NAME}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={ETCD_NAME}={peer}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        "--log-level=warn",
    ]


def etcd_healthy(host: str, client_port: int) -> bool:
    data = _get_json(f"http://{host}:{client_port}/health")
    return isinstance(data, dict) and data.get("health") == "true"


def node_config(
    node: Node,
    *,
    host: str,
    etcd_port: int,
    data_dir: Path,
    work_dir: Path,
    superuser_password: str,
    replication_password: str,
) -> dict[str, Any]:
    """One node's Patroni configuration (the ``bootstrap`` part is used only by the first node up)."""
    return {
        "scope": SCOPE,
        "namespace": "/kubernaut/",
        "name": node.name,
        "log": {"level": "WARNING"},
        "restapi": {
            "listen": f"{host}:{node.rest_port}",
            "connect_address": f"{host}:{node.rest_port}",
        },
        "etcd3": {"hosts": [f"{host}:{etcd_port}"]},
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S,
                "loop_wait": LOOP_WAIT_S,
                "retry_timeout": RETRY_TIMEOUT_S,
                "maximum_lag_on_failover": 1048576,
                "synchronous_mode": True,
                # Not strict: with its only standby gone the primary keeps taking writes alone (the
                # gateway's availability), rather than blocking every commit until a standby returns.
                "synchronous_mode_strict": False,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "max_connections": 200,
                        "synchronous_commit": "on",
                        "wal_log_hints": "on",
                        "hot_standby": "on",
                        "wal_keep_size": "128MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth-host": "scram-sha-256"}],
        },
        "postgresql": {
            "listen": f"{host}:{node.pg_port}",
            "connect_address": f"{host}:{node.pg_port}",
            "data_dir": str(data_dir),
            "bin_dir": str(Path(pg_bin("postgres")).parent),
            "pgpass": str(work_dir / "pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": superuser_password},
                "replication": {"username": REPLICATION_USER, "password": replication_password},
                "rewind": {"username": SUPERUSER, "password": superuser_password},
            },
            "pg_hba": [
                f"host replication {REPLICATION_USER} {host}/32 scram-sha-256",
                f"host all all {host}/32 scram-sha-256",
            ],
            "parameters": {"unix_socket_directories": "", "log_min_messages": "warning"},
            # A node pg_rewind cannot bring back is cloned afresh from the primary rather than left out.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _get_json(url: str, timeout: float = 1.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:  # /primary answers 503 on a standby, with the same body
        try:
            return json.loads(err.read())
        except ValueError:
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def cluster(host: str, rest_ports: tuple[int, ...]) -> dict[str, Any] | None:
    """Patroni's view of the cluster (``GET /cluster``) from the first node that answers."""
    for port in rest_ports:
        data = _get_json(f"http://{host}:{port}/cluster")
        if isinstance(data, dict) and "members" in data:
            return data
    return None


def is_primary(host: str, rest_port: int) -> bool:
    """``GET /primary`` is 200 only on the running leader (the node that takes writes)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{rest_port}/primary", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def leader(data: dict[str, Any] | None) -> str | None:
    if data is None:
        return None
    for m in data.get("members", []):
        if m.get("role") in ("leader", "master") and m.get("state") == "running":
            return str(m["name"])
    return None


def healthy(data: dict[str, Any] | None, nodes: int) -> bool:
    """A running leader and every other node a streaming synchronous or asynchronous standby, at least one
    of them synchronous."""
    if data is None or leader(data) is None:
        return False
    members = data.get("members", [])
    standbys = [m for m in members if m.get("role") not in ("leader", "master")]
    return (
        len(members) == nodes
        and all(m.get("state") in ("running", "streaming") for m in standbys)
        and any(m.get("role") == "sync_standby" for m in standbys)
    )


def switchover(host: str, rest_port: int, leader_name: str, candidate: str) -> None:
    """A planned switchover through the leader's REST API; returns once Patroni has done it."""
    body = json.dumps({"leader": leader_name, "candidate": candidate}).encode()
    req = urllib.request.Request(
        f"http://{host}:{rest_port}/switchover",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        if resp.status != 200:
            raise RuntimeError(f"switchover refused: {resp.status} {resp.read()!r}")


def postmaster_pid(data_dir: Path) -> int | None:
    """The node's postgres PID from its ``postmaster.pid`` (first line), if it is running."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first)
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None
