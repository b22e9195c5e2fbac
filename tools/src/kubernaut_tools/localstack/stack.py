"""The local topology: PostgreSQL, the gateway's Redis HA group, the Context-API's Redis, both services.

``LocalStack.up`` is idempotent: it starts only what is not running (a Redis node that comes back joins
the current master as a replica) and waits until everything is ready. ``down`` stops exactly the
processes recorded in the run directory, by PID.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kubernaut.config import Settings, load_settings
from kubernaut.store import roles
from kubernaut.store.migrate import migrate_dsn
from kubernaut_tools.localstack import alerting, postgres, redis_servers
from kubernaut_tools.localstack.faults import FaultPrimitives
from kubernaut_tools.localstack.launch import Launcher, http_ok
from kubernaut_tools.localstack.postgres_ha import ETCD, PostgresHA
from kubernaut_tools.localstack.processes import (
    ProcessRecord,
    ProcessTable,
    is_alive,
    wait_until,
)
from kubernaut_tools.localstack.signal_source import ScenarioSeries, write_signals
from kubernaut_tools.localstack.status import (
    ContextApi,
    ContextRedis,
    Gateway,
    GatewayGroup,
    Listener,
    Postgres,
    PostgresDsns,
    PostgresMember,
    Proc,
    Replica,
    Service,
    StackStatus,
)
from kubernaut_tools.localstack.topology import MASTER_NAME, QUORUM, Endpoint, RunDir, Topology

GATEWAY_TOKEN_NAME = "local"
GW_USER, CTX_USER = redis_servers.GATEWAY_USER, redis_servers.CONTEXT_API_USER
# The Context-API's local tokens: one that may record outcomes, one that may only read.
CONTEXT_WRITE_TOKEN_NAME = "local"
CONTEXT_READ_TOKEN_NAME = "local-read"
SERVICES = ("gateway", "context-api")
ALERTING = ("prometheus", "alertmanager", "signal-source")
_SERVICE_MODULES = {"gateway": "kubernaut.gateway.app", "context-api": "kubernaut.contextapi.app"}


def default_run_dir() -> Path:
    return Path(os.environ.get("KUBERNAUT_RUN_DIR", Path.cwd() / ".run"))


def service_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(_SERVICE_MODULES[name]) is not None
    except ModuleNotFoundError:  # the service's package itself is absent
        return False


class MasterNode(NamedTuple):
    name: str  # redis-gateway-N
    addr: tuple[str, int]


class LocalStack(FaultPrimitives):
    def __init__(
        self,
        run_dir: Path | None = None,
        topology: Topology | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.topology = topology or Topology()
        self.run = RunDir((run_dir or default_run_dir()).resolve())
        self.table = ProcessTable(self.run.state_file)
        self._log = log or (lambda _msg: None)
        self.launcher = Launcher(self.run, self.table, self._log)
        self.pg_ha = PostgresHA(self.run, self.topology, self.table, self.launcher.spawn)

    @property
    def postgres_ha(self) -> bool:
        """Whether this run directory's PostgreSQL is the Patroni cluster (``up(postgres_ha=True)``)."""
        return self.run.postgres_ha_marker.exists()

    # -- names and addresses -------------------------------------------------------------------------

    def nodes(self) -> list[Endpoint]:
        return [
            Endpoint(f"redis-gateway-{i}", p, "redis-gateway")
            for i, p in enumerate(self.topology.redis_gateway_ports)
        ]

    def sentinels(self) -> list[Endpoint]:
        return [Endpoint(f"sentinel-{i}", p, "sentinel") for i, p in enumerate(self.topology.sentinel_ports)]

    def postgres_endpoints(self) -> list[Endpoint]:
        t = self.topology
        if not self.postgres_ha:
            return [Endpoint("postgres", t.postgres_port, "postgres")]
        return [
            *(Endpoint(n.name, n.pg_port, "postgres") for n in self.pg_ha.nodes()),
            Endpoint(ETCD, t.etcd_client_port, "etcd"),
        ]

    def endpoints(self) -> list[Endpoint]:
        t = self.topology
        return [
            *self.postgres_endpoints(),
            *self.nodes(),
            *self.sentinels(),
            Endpoint("redis-context", t.redis_context_port, "redis-context"),
            Endpoint("gateway", t.gateway_http, "service"),
            Endpoint("context-api", t.context_http, "service"),
            Endpoint("prometheus", t.prometheus_port, "alerting"),
            Endpoint("alertmanager", t.alertmanager_port, "alerting"),
            Endpoint("signal-source", t.signal_source_port, "alerting"),
        ]

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints():
            if e.name == name:
                return e
        raise KeyError(name)

    def record(self, name: str) -> ProcessRecord | None:
        return self.launcher.record(name)

    @property
    def postgres_password(self) -> str:
        return self.run.postgres_password_file.read_text().strip()

    @property
    def redis_gateway_password(self) -> str:
        return self.run.redis_gateway_password_file.read_text().strip()

    @property
    def redis_sentinel_password(self) -> str:
        return self.run.redis_sentinel_password_file.read_text().strip()

    @property
    def redis_context_password(self) -> str:
        return self.run.redis_context_password_file.read_text().strip()

    def redis_user_password(self, user: str) -> str:
        return self.run.redis_user_password_file(user).read_text().strip()

    def _probe_password(self, file: Path) -> str | None:
        """For probes and status, which also run on a run directory without secrets (yet)."""
        return file.read_text().strip() if file.exists() else None

    def redis_password(self, port: int) -> str:
        """The password of the stack's Redis server or sentinel listening on ``port``."""
        t = self.topology
        if port in t.redis_gateway_ports:
            return self.redis_gateway_password
        if port in t.sentinel_ports:
            return self.redis_sentinel_password
        if port == t.redis_context_port:
            return self.redis_context_password
        raise KeyError(f"no Redis of this stack listens on port {port}")

    def redis_auth(self, port: int) -> dict[str, Any]:
        """``host``, ``port`` and ``password`` for a redis-py client of the stack's server on ``port``."""
        return {"host": self.topology.host, "port": port, "password": self.redis_password(port)}

    @property
    def gateway_token(self) -> str:
        tokens = yaml.safe_load(self.run.gateway_tokens_file.read_text())
        return str(tokens[GATEWAY_TOKEN_NAME])

    def _context_token(self, name: str) -> str:
        tokens = yaml.safe_load(self.run.context_api_tokens_file.read_text())
        return str(tokens[name]["token"])

    @property
    def context_api_token(self) -> str:
        """The Context-API token with the write scope (it reads too)."""
        return self._context_token(CONTEXT_WRITE_TOKEN_NAME)

    @property
    def context_api_read_token(self) -> str:
        return self._context_token(CONTEXT_READ_TOKEN_NAME)

    def postgres_role_passwords(self) -> dict[str, str]:
        roles_ = (roles.OWNER, *roles.SERVICE_ROLES)
        return {r: self.run.postgres_role_password_file(r).read_text().strip() for r in roles_}

    def _pg_dsn(self, user: str, password: str, attrs: str = "read-write") -> str:
        """The single server's DSN; with HA every node's, and libpq's ``target_session_attrs``."""
        if self.postgres_ha:
            return self.pg_ha.dsn(password, user=user, attrs=attrs)
        return postgres.dsn(self.topology.host, self.topology.postgres_port, password, user=user)

    def postgres_role_dsn(self, role: str, *, attrs: str = "read-write") -> str:
        return self._pg_dsn(role, self.run.postgres_role_password_file(role).read_text().strip(), attrs)

    @property
    def ui_gateway_token_file(self) -> Path:
        """The gateway token alone, for the Context-API's page to read the gateway's Redis group."""
        return self.run.secrets / "ui-gateway-token"

    @property
    def postgres_dsn(self) -> str:
        """The schema owner's DSN (migrations, tools; no superuser): ``postgres.dsn`` of the config."""
        return self.postgres_role_dsn(roles.OWNER)

    @property
    def postgres_admin_dsn(self) -> str:
        """The bootstrap superuser's DSN, for creating databases and roles only."""
        return self._pg_dsn(postgres.SUPERUSER, self.postgres_password)

    @property
    def postgres_read_dsn(self) -> str | None:
        """With HA: the Context-API's role on every node, a standby preferred (its reads); else None."""
        if not self.postgres_ha:
            return None
        return self.postgres_role_dsn(roles.CONTEXT_API, attrs="prefer-standby")

    def url(self, service: str) -> str:
        return f"http://{self.topology.host}:{self.endpoint(service).port}"

    def settings(self) -> Settings:
        return load_settings(self.run.config_file)

    # -- up ------------------------------------------------------------------------------------------

    def up(
        self,
        *,
        services: bool = True,
        alerting: bool = False,
        timeout: float = 60.0,
        postgres_ha: bool = False,
        chaos_proxy: bool = False,
    ) -> None:
        """Start what is not running. ``postgres_ha`` makes this run directory's PostgreSQL the Patroni
        cluster for good; a directory already holding the single instance's data refuses it.
        ``chaos_proxy``: the gateway reaches its Redis nodes through TCP proxies that :meth:`partition` can
        black-hole (kept for later calls; only on a stack whose gateway is not running yet, since the
        gateway reads its configuration at start)."""
        for d in (self.run.root, self.run.secrets, self.run.logs):
            d.mkdir(parents=True, exist_ok=True)
        if postgres_ha and not self.postgres_ha:
            if (self.run.component_dir("postgres")).exists():
                raise RuntimeError(
                    f"{self.run.root} holds a single PostgreSQL instance: `kubernaut down --purge` it or "
                    "use another --run-dir for --postgres-ha"
                )
            self.run.postgres_ha_marker.write_text("patroni\n")
        if chaos_proxy and not self.chaos_proxy:
            if self.record("gateway") is not None:
                raise RuntimeError("the gateway is running without the chaos proxies: `kubernaut down` first")
            self.run.chaos_proxy_marker.touch()
        self._write_secrets()
        self._write_service_config()
        self._start_postgres()
        self._start_gateway_group()
        self._start_proxies()
        self._start_context_redis()
        self._wait_infrastructure(timeout)
        if services:
            for name in SERVICES:
                if service_available(name):
                    self.start_service(name, timeout)
        if alerting:
            self.start_alerting(timeout)

    def _write_secrets(self) -> None:
        self.run.secrets.chmod(0o700)
        for file in (
            self.run.postgres_password_file,
            *(self.run.postgres_role_password_file(r) for r in (roles.OWNER, *roles.SERVICE_ROLES)),
            self.run.redis_gateway_password_file,
            self.run.redis_sentinel_password_file,
            self.run.redis_context_password_file,
            self.run.redis_user_password_file(redis_servers.GATEWAY_USER),
            self.run.redis_user_password_file(redis_servers.CONTEXT_API_USER),
        ):
            if not file.exists():
                file.write_text(secrets.token_urlsafe(24) + "\n")
                file.chmod(0o600)
        if not self.run.gateway_tokens_file.exists():
            self.run.gateway_tokens_file.write_text(
                yaml.safe_dump({GATEWAY_TOKEN_NAME: secrets.token_urlsafe(32)})
            )
            self.run.gateway_tokens_file.chmod(0o600)
        if not self.run.context_api_tokens_file.exists():
            tokens = {
                CONTEXT_WRITE_TOKEN_NAME: {"token": secrets.token_urlsafe(32), "scope": "write"},
                CONTEXT_READ_TOKEN_NAME: {"token": secrets.token_urlsafe(32), "scope": "read"},
            }
            self.run.context_api_tokens_file.write_text(yaml.safe_dump(tokens))
            self.run.context_api_tokens_file.chmod(0o600)
        self.ui_gateway_token_file.write_text(self.gateway_token)
        self.ui_gateway_token_file.chmod(0o600)

    def _write_service_config(self) -> None:
        t = self.topology
        redis_section: dict[str, Any] = {
            "sentinels": [t.addr(p) for p in t.sentinel_ports],
            "master_name": MASTER_NAME,
            "username": redis_servers.GATEWAY_USER,
            "password": self.redis_user_password(redis_servers.GATEWAY_USER),
            "sentinel_password": self.redis_sentinel_password,
        }
        if self.chaos_proxy:
            redis_section["address_map"] = {
                t.addr(n.port): t.addr(p) for n, p in zip(self.nodes(), t.proxy_ports, strict=True)
            }
        config: dict[str, Any] = {
            "gateway": {
                "http": {"host": t.host, "port": t.gateway_http},
                "redis": redis_section,
                "auth": {"enabled": True, "tokens_file": str(self.run.gateway_tokens_file)},
            },
            "context_api": {
                "http": {"host": t.host, "port": t.context_http},
                "redis": {
                    "host": t.host,
                    "port": t.redis_context_port,
                    "username": redis_servers.CONTEXT_API_USER,
                    "password": self.redis_user_password(redis_servers.CONTEXT_API_USER),
                },
                "auth": {"enabled": True, "tokens_file": str(self.run.context_api_tokens_file)},
                "ui": {
                    "gateway_url": self.url("gateway"),
                    "gateway_token_file": str(self.ui_gateway_token_file),
                },
            },
            "postgres": {
                "dsn": self.postgres_dsn,
                "gateway_dsn": self.postgres_role_dsn(roles.GATEWAY),
                "context_api_dsn": self.postgres_role_dsn(roles.CONTEXT_API),
                # `up` migrates as the owner before it starts the services; their roles cannot.
                "migrate_on_start": False,
                **({"read_dsn": self.postgres_read_dsn} if self.postgres_ha else {}),
            },
        }
        self.run.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.run.config_file.chmod(0o600)

    def _start_postgres(self) -> None:
        if self.postgres_ha:
            self.pg_ha.start(self.postgres_password)
            return
        if self.record("postgres") is not None:
            return
        comp = self.run.component_dir("postgres")
        comp.mkdir(exist_ok=True)
        data = postgres.data_dir_for(comp)
        initialised = comp / "initdb.done"
        if (
            (data / "PG_VERSION").exists()
            and not initialised.exists()
            and not data.is_relative_to(self.run.root)
        ):
            # Left in /var/tmp by an earlier run directory at this path (kept after a failed test session):
            # its superuser has another password.
            shutil.rmtree(data.parent, ignore_errors=True)
        if not (data / "PG_VERSION").exists():
            self._log("initialising PostgreSQL data directory")
            postgres.initdb(data, self.run.postgres_password_file, self.run.log("postgres"))
            initialised.write_text("")
        argv = postgres.server_argv(data, self.topology.host, self.topology.postgres_port)
        self.launcher.spawn("postgres", argv, marker=str(data), user=postgres.service_user(), cwd=data)

    def current_master(self) -> tuple[str, int] | None:
        """The master most sentinels name, else a live node that says it is master."""
        votes: dict[tuple[str, int], int] = {}
        sentinel_pw = self._probe_password(self.run.redis_sentinel_password_file)
        for s in self.sentinels():
            m = redis_servers.sentinel_master(self.topology.host, s.port, sentinel_pw)
            if m is not None:
                votes[m] = votes.get(m, 0) + 1
        if votes:
            return max(votes, key=lambda m: votes[m])
        node_pw = self._probe_password(self.run.redis_gateway_password_file)
        for n in self.nodes():
            info = redis_servers.replication(self.topology.host, n.port, node_pw)
            if info is not None and info.get("role") == "master":
                return (self.topology.host, n.port)
        return None

    def master_node(self) -> MasterNode:
        """The current master (``current_master``) and its node's name; RuntimeError when there is none."""
        master = self.current_master()
        if master is None:
            raise RuntimeError("the gateway's Redis group has no master: run `kubernaut up` first")
        return MasterNode(next(n.name for n in self.nodes() if n.port == master[1]), master)

    def _start_gateway_group(self) -> None:
        host = self.topology.host
        first = (host, self.nodes()[0].port)
        master = self.current_master() or first
        for node in self.nodes():
            if self.record(node.name) is None:
                self.start_node(node.name, master)
        for s in self.sentinels():
            if self.record(s.name) is not None:
                continue
            workdir = self.run.component_dir(s.name)
            workdir.mkdir(exist_ok=True)
            conf = workdir / "sentinel.conf"
            # Sentinel rewrites its own file with what it learns: keep it, unless it was written for other
            # ports (the same run directory used with another --port-offset).
            known_ports = {n.port for n in self.nodes()}
            passwords = (self.redis_sentinel_password, self.redis_gateway_password)
            if not conf.exists() or not redis_servers.sentinel_conf_matches(
                conf, s.port, known_ports, *passwords
            ):
                conf.write_text(redis_servers.sentinel_conf(host, s.port, workdir, master, *passwords))
            self.launcher.spawn(s.name, [redis_servers.REDIS_SENTINEL, str(conf)], marker=str(s.port))

    def start_node(self, name: str, master: tuple[str, int] | None = None) -> None:
        """(Re)start one node of the gateway's group, as a replica unless it is the current master."""
        host = self.topology.host
        node = self.endpoint(name)
        master = master or self.current_master() or (host, self.nodes()[0].port)
        workdir = self.run.component_dir(name)
        workdir.mkdir(exist_ok=True)
        conf = workdir / "redis.conf"
        replica_of = None if master == (host, node.port) else master
        conf.write_text(
            redis_servers.gateway_node_conf(
                host,
                node.port,
                workdir,
                replica_of,
                self.redis_gateway_password,
                self.redis_user_password(redis_servers.GATEWAY_USER),
            )
        )
        self.launcher.spawn(name, [redis_servers.REDIS_SERVER, str(conf)], marker=str(node.port))

    def _start_context_redis(self) -> None:
        if self.record("redis-context") is not None:
            return
        port = self.topology.redis_context_port
        workdir = self.run.component_dir("redis-context")
        workdir.mkdir(exist_ok=True)
        conf = workdir / "redis.conf"
        conf.write_text(
            redis_servers.context_conf(
                self.topology.host,
                port,
                workdir,
                self.redis_context_password,
                self.redis_user_password(redis_servers.CONTEXT_API_USER),
            )
        )
        self.launcher.spawn("redis-context", [redis_servers.REDIS_SERVER, str(conf)], marker=str(port))

    def group_ready(self) -> bool:
        """Replication linked (2 online replicas) and every sentinel agrees on the master and its peers."""
        host = self.topology.host
        master = self.current_master()
        if master is None or redis_servers.online_replicas(*master, self.redis_gateway_password) < 2:
            return False
        sentinel_pw = self.redis_sentinel_password
        for s in self.sentinels():
            if redis_servers.sentinel_master(host, s.port, sentinel_pw) != master:
                return False
            info = redis_servers.sentinel_master_info(host, s.port, sentinel_pw)
            if info is None or "down" in info.get("flags", "down"):
                return False
            if int(info.get("num-slaves", 0)) < 2 or int(info.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def _wait_postgres(self, timeout: float) -> None:
        t = self.topology
        if self.postgres_ha:
            self.pg_ha.wait_ready(timeout, self.run.logs)

            def database() -> bool:
                primary = self.pg_ha.primary()
                return primary is not None and postgres.ensure_database(
                    t.host, primary.pg_port, self.postgres_password, self.postgres_role_passwords()
                )

            wait_until(database, timeout=timeout, interval=0.2, what="the project's database on the primary")
            owner = self.postgres_role_passwords()[roles.OWNER]

            def everywhere() -> bool:
                # A synchronous commit is flushed on the standby, not yet replayed; asyncpg gives up on a
                # multi-host DSN at the first node that lacks the database instead of trying the next.
                nodes = self.pg_ha.nodes()
                return all(postgres.has_database(t.host, n.pg_port, owner, roles.OWNER) for n in nodes)

            wait_until(everywhere, timeout=timeout, interval=0.2, what="the project's database on every node")
        else:
            wait_until(
                lambda: postgres.ensure_database(
                    t.host, t.postgres_port, self.postgres_password, self.postgres_role_passwords()
                ),
                timeout=timeout,
                interval=0.2,
                what=f"PostgreSQL on {t.addr(t.postgres_port)} (log: {self.run.log('postgres')})",
            )
        asyncio.run(migrate_dsn(self.postgres_dsn))  # as the owner; this also grants the service roles

    def _wait_infrastructure(self, timeout: float) -> None:
        t = self.topology
        self._wait_postgres(timeout)
        wait_until(
            lambda: redis_servers.ping(t.host, t.redis_context_port, self.redis_context_password),
            timeout=timeout,
            what=f"the Context-API's Redis on {t.addr(t.redis_context_port)}",
        )
        wait_until(
            self.group_ready,
            timeout=timeout,
            interval=0.2,
            what="the gateway's Redis group (2 replicas online, 3 sentinels agreeing)",
        )

    def start_service(self, name: str, timeout: float = 30.0) -> None:
        """Start one service (``gateway`` or ``context-api``) unless running; wait for /readyz."""
        env = {**os.environ, "KUBERNAUT_CONFIG": str(self.run.config_file)}
        if name == "gateway":  # its worker processes' metrics, merged; emptied at each start
            metrics = self.run.component_dir("gateway-metrics")
            metrics.mkdir(exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        argv = [sys.executable, "-m", "kubernaut", name, "--config", str(self.run.config_file)]
        url = f"{self.url(name)}/readyz"
        self.launcher.launch(
            name,
            argv,
            marker=f"-m kubernaut {name}",
            ready=partial(http_ok, url),
            timeout=timeout,
            what=f"{name} at {url}",
            env=env,
        )

    def wait_service_ready(self, name: str, timeout: float = 30.0) -> None:
        url = f"{self.url(name)}/readyz"
        self.launcher.wait_ready(name, partial(http_ok, url), timeout=timeout, what=f"{name} at {url}")

    # -- down ----------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every recorded process (alerting and services first, PostgreSQL last); return the names."""
        order = [
            *ALERTING,
            *SERVICES,
            *(s.name for s in self.sentinels()),
            *(self.proxy_name(n.name) for n in self.nodes()),
            *(n.name for n in self.nodes()),
            "redis-context",
            "postgres",
        ]
        ha = {n.name for n in self.pg_ha.nodes()} | {ETCD}
        extra = [n for n in self.table.load() if n not in order and n not in ha]  # e.g. a benchmark's own
        stopped = self._stop([*extra, *order])
        if self.postgres_ha:
            stopped += self.pg_ha.stop_all(self._log)
        return stopped

    def _stop(self, names: list[str]) -> list[str]:
        # PostgreSQL's SIGTERM waits for clients to leave; SIGINT is its "fast" shutdown.
        return [
            name
            for name in names
            if self.launcher.retire(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        ]

    def destroy(self) -> list[str]:
        """``down``, then delete the run directory and any data directory kept outside it."""
        stopped = self.down()
        self.pg_ha.purge()
        comp = self.run.component_dir("postgres")
        if comp.exists():
            data = postgres.data_dir_for(comp)
            if not data.is_relative_to(self.run.root):
                shutil.rmtree(data.parent, ignore_errors=True)
        shutil.rmtree(self.run.root, ignore_errors=True)
        return stopped

    def start_redis_context(self, timeout: float = 30.0) -> None:
        """(Re)start the Context-API's Redis unless running, and wait until it answers."""
        self._start_context_redis()
        host, port = self.topology.host, self.topology.redis_context_port
        pw = self.redis_context_password
        wait_until(
            lambda: redis_servers.ping(host, port, pw), timeout=timeout, what=f"Redis on {host}:{port}"
        )

    # -- status --------------------------------------------------------------------------------------

    def _proc(self, name: str) -> Proc:
        rec = self.table.get(name)
        return Proc(pid=rec.pid if rec else None, alive=bool(rec and is_alive(rec)))

    def _postgres_dsns(self) -> PostgresDsns:
        if not self.run.postgres_role_password_file(roles.CONTEXT_API).exists():
            return PostgresDsns()
        return PostgresDsns(
            dsn=self.postgres_dsn,
            read_dsn=self.postgres_read_dsn,
            gateway_dsn=self.postgres_role_dsn(roles.GATEWAY),
            context_api_dsn=self.postgres_role_dsn(roles.CONTEXT_API),
            admin_dsn=self.postgres_admin_dsn,
        )

    def status(self) -> StackStatus:
        t = self.topology
        sentinel_pw = self._probe_password(self.run.redis_sentinel_password_file)
        node_pw = self._probe_password(self.run.redis_gateway_password_file)
        master = self.current_master()
        info = None
        for s in self.sentinels():
            info = redis_servers.sentinel_master_info(t.host, s.port, sentinel_pw)
            if info is not None:
                break
        replicas = []
        for n in self.nodes():
            if master is not None and n.port == master[1]:
                continue
            rep = redis_servers.replication(t.host, n.port, node_pw)
            replicas.append(Replica(t.addr(n.port), rep.get("role") if rep else None, self._proc(n.name)))
        has_context_tokens = self.run.context_api_tokens_file.exists()
        return StackStatus(
            run_dir=str(self.run.root),
            redis_gateway=GatewayGroup(
                master_name=MASTER_NAME,
                master=f"{master[0]}:{master[1]}" if master else None,
                replicas=replicas,
                nodes={n.name: Listener(t.addr(n.port), self._proc(n.name)) for n in self.nodes()},
                sentinels=[Listener(t.addr(s.port), self._proc(s.name)) for s in self.sentinels()],
                quorum=int(info["quorum"]) if info else QUORUM,
                password=node_pw,
                sentinel_password=sentinel_pw,
                users={u: self._probe_password(self.run.redis_user_password_file(u)) for u in [GW_USER]},
            ),
            redis_context=ContextRedis(
                addr=t.addr(t.redis_context_port),
                password=self._probe_password(self.run.redis_context_password_file),
                users={u: self._probe_password(self.run.redis_user_password_file(u)) for u in [CTX_USER]},
                proc=self._proc("redis-context"),
            ),
            postgres=self.postgres_status(),
            gateway=Gateway(
                url=self.url("gateway"),
                proc=self._proc("gateway"),
                token=self.gateway_token if self.run.gateway_tokens_file.exists() else None,
            ),
            context_api=ContextApi(
                url=self.url("context-api"),
                proc=self._proc("context-api"),
                token=self.context_api_token if has_context_tokens else None,
                read_token=self.context_api_read_token if has_context_tokens else None,
            ),
            alerting=self.alerting_status() if any(map(self.table.get, ALERTING)) else {},
        )

    def postgres_status(self) -> Postgres:
        """The single server, or the Patroni cluster's members with the primary's address and process."""
        t = self.topology
        if not self.postgres_ha:
            proc = self._proc("postgres")
            addr = t.addr(t.postgres_port)
            member = PostgresMember("postgres", addr, proc.pid, "primary", sync=False)
            return Postgres(
                mode="single",
                addr=addr,
                primary=addr if proc.alive else None,
                members=[member] if proc.alive else [],
                proc=proc,
                dsns=self._postgres_dsns(),
            )
        members = self.pg_ha.members()
        primary = next((m for m in members if m.role == "primary"), None)
        return Postgres(
            mode="ha",
            addr=primary.addr if primary else None,
            primary=primary.addr if primary else None,
            members=members,
            proc=Proc(pid=primary.pid if primary else None, alive=primary is not None),
            etcd=Listener(t.addr(t.etcd_client_port), self._proc(ETCD)),
            dsns=self._postgres_dsns(),
        )

    # -- alerting (Prometheus, Alertmanager and the signal source their rules read) ----------------------

    def start_alerting(self, timeout: float = 60.0) -> None:
        """Start the signal source, Alertmanager and Prometheus unless running; wait for /-/ready."""
        t, run = self.topology, self.run
        run.alertmanager_token_file.write_text(self.gateway_token)
        run.alertmanager_token_file.chmod(0o600)
        if not run.signals_file.exists():
            write_signals(run.signals_file, [])
        if self.record("signal-source") is None:
            argv = [
                sys.executable,
                "-m",
                "kubernaut_tools.localstack.signal_source",
                f"--file={run.signals_file}",
                f"--host={t.host}",
                f"--port={t.signal_source_port}",
            ]
            self.launcher.spawn("signal-source", argv, marker=f"--file={run.signals_file}")
        if self.record("alertmanager") is None:
            comp = run.component_dir("alertmanager")
            (comp / "data").mkdir(parents=True, exist_ok=True)
            conf = comp / "alertmanager.yml"
            webhook = self.url("gateway") + alerting.WEBHOOK_PATH
            conf.write_text(alerting.alertmanager_yaml(webhook, run.alertmanager_token_file))
            argv = alerting.alertmanager_argv(conf, comp / "data", t.addr(t.alertmanager_port))
            self.launcher.spawn("alertmanager", argv, marker=f"--config.file={conf}")
        if self.record("prometheus") is None:
            comp = run.component_dir("prometheus")
            (comp / "data").mkdir(parents=True, exist_ok=True)
            rules, conf = comp / "rules.yml", comp / "prometheus.yml"
            rules.write_text(alerting.rules_yaml())
            targets = alerting.ScrapeTargets(
                gateway=t.addr(t.gateway_http),
                context_api=t.addr(t.context_http),
                signal_source=t.addr(t.signal_source_port),
                alertmanager=t.addr(t.alertmanager_port),
                prometheus=t.addr(t.prometheus_port),
            )
            conf.write_text(alerting.prometheus_yaml(targets, rules))
            argv = alerting.prometheus_argv(conf, comp / "data", t.addr(t.prometheus_port))
            self.launcher.spawn("prometheus", argv, marker=f"--config.file={conf}")
        # all three spawned first, so they start up side by side
        probes = {"signal-source": "/metrics", "alertmanager": "/-/ready", "prometheus": "/-/ready"}
        for name, path in probes.items():
            url = self.url(name) + path
            self.launcher.wait_ready(name, partial(http_ok, url), timeout=timeout, what=f"{name} at {url}")

    def set_signals(self, signals: list[ScenarioSeries]) -> None:
        """Replace the signal source's series; the local rules see them at the next scrape (1 s)."""
        write_signals(self.run.signals_file, signals)

    def stop_alerting(self) -> list[str]:
        """Stop Prometheus, Alertmanager and the signal source only; return the names stopped."""
        return self._stop(list(ALERTING))

    def alerting_status(self) -> dict[str, Service]:
        return {name: Service(self.url(name), self._proc(name)) for name in ALERTING}
