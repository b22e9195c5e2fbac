"""The local stack's status as typed values (``LocalStack.status``); ``as_json`` is `kubernaut status --json`.

The JSON shape is a public interface (scripts and the tests read it): ``as_json`` keeps its keys and their
order exactly, including the keys that are null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PgRole = Literal["primary", "standby"]


@dataclass(frozen=True)
class Proc:
    """A recorded process: its PID (None when never started) and whether it still runs."""

    pid: int | None
    alive: bool

    def json(self) -> dict[str, Any]:
        return {"pid": self.pid, "alive": self.alive}


@dataclass(frozen=True)
class Listener:
    """A process of the stack and the address it listens on."""

    addr: str
    proc: Proc

    def json(self) -> dict[str, Any]:
        return {"addr": self.addr, **self.proc.json()}


@dataclass(frozen=True)
class Replica:
    addr: str
    role: str | None  # what the node itself says (INFO replication), None when it does not answer
    proc: Proc

    def json(self) -> dict[str, Any]:
        return {"addr": self.addr, "role": self.role, **self.proc.json()}


@dataclass(frozen=True)
class GatewayGroup:
    """The gateway's Redis HA group: nodes, sentinels, the master they name, the credentials."""

    master_name: str
    master: str | None  # host:port
    replicas: list[Replica]
    nodes: dict[str, Listener]
    sentinels: list[Listener]
    quorum: int
    password: str | None
    sentinel_password: str | None
    users: dict[str, str | None]

    def json(self) -> dict[str, Any]:
        return {
            "master_name": self.master_name,
            "master": self.master,
            "replicas": [r.json() for r in self.replicas],
            "nodes": {name: n.json() for name, n in self.nodes.items()},
            "sentinels": [s.json() for s in self.sentinels],
            "quorum": self.quorum,
            "password": self.password,
            "sentinel_password": self.sentinel_password,
            "users": dict(self.users),
        }


@dataclass(frozen=True)
class ContextRedis:
    addr: str
    password: str | None
    users: dict[str, str | None]
    proc: Proc

    def json(self) -> dict[str, Any]:
        return {"addr": self.addr, "password": self.password, "users": dict(self.users), **self.proc.json()}


@dataclass(frozen=True)
class PatroniMember:
    """What Patroni adds about an HA member."""

    lag: Any  # as Patroni reports it (bytes behind, or a string such as "unknown")
    pid: int | None  # Patroni's own process
    api: str  # its REST API's base URL


@dataclass(frozen=True)
class PostgresMember:
    name: str
    addr: str
    pid: int | None  # its postmaster
    role: PgRole | None  # None while down or not replicating yet
    sync: bool  # the synchronous standby
    patroni: PatroniMember | None = None  # HA only

    def json(self) -> dict[str, Any]:
        out = {"name": self.name, "addr": self.addr, "pid": self.pid, "role": self.role, "sync": self.sync}
        if self.patroni is not None:
            out |= {"lag": self.patroni.lag, "patroni_pid": self.patroni.pid, "patroni_api": self.patroni.api}
        return out


@dataclass(frozen=True)
class PostgresDsns:
    """Null until the run directory holds the roles' passwords."""

    dsn: str | None = None
    read_dsn: str | None = None
    gateway_dsn: str | None = None
    context_api_dsn: str | None = None
    admin_dsn: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn,
            "read_dsn": self.read_dsn,
            "gateway_dsn": self.gateway_dsn,
            "context_api_dsn": self.context_api_dsn,
            "admin_dsn": self.admin_dsn,
        }


@dataclass(frozen=True)
class Postgres:
    """One server (``mode`` single) or the Patroni cluster (ha); ``addr`` and ``proc`` are the primary's."""

    mode: Literal["single", "ha"]
    addr: str | None
    primary: str | None
    members: list[PostgresMember]
    proc: Proc
    etcd: Listener | None = None  # HA only
    dsns: PostgresDsns = field(default_factory=PostgresDsns)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "addr": self.addr,
            "primary": self.primary,
            "members": [m.json() for m in self.members],
        }
        if self.etcd is not None:
            out["etcd"] = self.etcd.json()
        return out | self.proc.json() | self.dsns.json()


@dataclass(frozen=True)
class Service:
    """A service (or an alerting part) by its URL; tokens for the services only."""

    url: str
    proc: Proc

    def json(self) -> dict[str, Any]:
        return {"url": self.url, **self.proc.json()}


@dataclass(frozen=True)
class Gateway(Service):
    token: str | None = None

    def json(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, **self.proc.json()}


@dataclass(frozen=True)
class ContextApi(Service):
    token: str | None = None  # may record outcomes
    read_token: str | None = None

    def json(self) -> dict[str, Any]:
        return {"url": self.url, "token": self.token, "read_token": self.read_token, **self.proc.json()}


@dataclass(frozen=True)
class StackStatus:
    run_dir: str
    redis_gateway: GatewayGroup
    redis_context: ContextRedis
    postgres: Postgres
    gateway: Gateway
    context_api: ContextApi
    alerting: dict[str, Service]  # empty unless one of its parts was started

    @property
    def services_running(self) -> bool:
        """Both services alive and the gateway's group has a master: what drills and the demo need."""
        both = self.gateway.proc.alive and self.context_api.proc.alive
        return both and self.redis_gateway.master is not None

    @property
    def alerting_running(self) -> bool:
        return bool(self.alerting) and all(p.proc.alive for p in self.alerting.values())

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_dir": self.run_dir,
            "redis_gateway": self.redis_gateway.json(),
            "redis_context": self.redis_context.json(),
            "postgres": self.postgres.json(),
            "gateway": self.gateway.json(),
            "context_api": self.context_api.json(),
        }
        if self.alerting:
            out["alerting"] = {name: p.json() for name, p in self.alerting.items()}
        return out
