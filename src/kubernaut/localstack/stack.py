"""The local topology: PostgreSQL, the gateway's Redis HA group, the Context-API's Redis, both services.

``LocalStack.up`` is idempotent: it starts only what is not running (a Redis node that comes back joins
the current master as a replica) and waits until everything is ready. ``down`` stops exactly the
processes recorded in the run directory, by PID.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubernaut.config import Settings, load_settings
from kubernaut.localstack import alerting, postgres, redis_servers
from kubernaut.localstack.processes import (
    ProcessRecord,
    ProcessTable,
    is_alive,
    signal_process,
    spawn,
    stop,
    wait_until,
)
from kubernaut.localstack.signal_source import Signal, write_signals
from kubernaut.localstack.topology import MASTER_NAME, QUORUM, RunDir, Topology

GATEWAY_TOKEN_NAME = "local"
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


@dataclass(frozen=True)
class Endpoint:
    name: str
    port: int
    kind: str  # redis-gateway | sentinel | redis-context | postgres | service | alerting


class LocalStack:
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

    # -- names and addresses -------------------------------------------------------------------------

    def nodes(self) -> list[Endpoint]:
        return [
            Endpoint(f"redis-gateway-{i}", p, "redis-gateway")
            for i, p in enumerate(self.topology.redis_gateway_ports)
        ]

    def sentinels(self) -> list[Endpoint]:
        return [Endpoint(f"sentinel-{i}", p, "sentinel") for i, p in enumerate(self.topology.sentinel_ports)]

    def endpoints(self) -> list[Endpoint]:
        t = self.topology
        return [
            Endpoint("postgres", t.postgres_port, "postgres"),
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
        rec = self.table.get(name)
        return rec if rec is not None and is_alive(rec) else None

    @property
    def postgres_password(self) -> str:
        return self.run.postgres_password_file.read_text().strip()

    @property
    def gateway_token(self) -> str:
        tokens = yaml.safe_load(self.run.gateway_tokens_file.read_text())
        return str(tokens[GATEWAY_TOKEN_NAME])

    @property
    def context_api_token_file(self) -> Path:
        """The token of the operator's page ``/ui`` (until the Context-API has bearer auth of its own)."""
        return self.run.secrets / "context-api-token"

    @property
    def ui_gateway_token_file(self) -> Path:
        """The gateway token alone, for the Context-API's page to read the gateway's Redis group."""
        return self.run.secrets / "ui-gateway-token"

    @property
    def context_api_token(self) -> str:
        return self.context_api_token_file.read_text().strip()

    @property
    def postgres_dsn(self) -> str:
        return postgres.dsn(self.topology.host, self.topology.postgres_port, self.postgres_password)

    def url(self, service: str) -> str:
        return f"http://{self.topology.host}:{self.endpoint(service).port}"

    def settings(self) -> Settings:
        return load_settings(self.run.config_file)

    # -- up ------------------------------------------------------------------------------------------

    def up(self, *, services: bool = True, alerting: bool = False, timeout: float = 60.0) -> None:
        for d in (self.run.root, self.run.secrets, self.run.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._write_secrets()
        self._write_service_config()
        self._start_postgres()
        self._start_gateway_group()
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
        if not self.run.postgres_password_file.exists():
            self.run.postgres_password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.run.postgres_password_file.chmod(0o600)
        if not self.context_api_token_file.exists():
            self.context_api_token_file.write_text(secrets.token_urlsafe(32) + "\n")
            self.context_api_token_file.chmod(0o600)
        if not self.run.gateway_tokens_file.exists():
            self.run.gateway_tokens_file.write_text(
                yaml.safe_dump({GATEWAY_TOKEN_NAME: secrets.token_urlsafe(32)})
            )
            self.run.gateway_tokens_file.chmod(0o600)
        self.ui_gateway_token_file.write_text(self.gateway_token)
        self.ui_gateway_token_file.chmod(0o600)

    def _write_service_config(self) -> None:
        t = self.topology
        config: dict[str, Any] = {
            "gateway": {
                "http": {"host": t.host, "port": t.gateway_http},
                "redis": {"sentinels": [t.addr(p) for p in t.sentinel_ports], "master_name": MASTER_NAME},
                "auth": {"enabled": True, "tokens_file": str(self.run.gateway_tokens_file)},
            },
            "context_api": {
                "http": {"host": t.host, "port": t.context_http},
                "redis": {"host": t.host, "port": t.redis_context_port},
            },
            "postgres": {"dsn": self.postgres_dsn},
        }
        self.run.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.run.config_file.chmod(0o600)

    def _spawn(self, name: str, argv: list[str], marker: str, **kw: Any) -> None:
        rec = spawn(name, argv, marker=marker, log=self.run.log(name), **kw)
        self.table.put(rec)
        self._log(f"started {name} (pid {rec.pid})")

    def _start_postgres(self) -> None:
        if self.record("postgres") is not None:
            return
        comp = self.run.component_dir("postgres")
        comp.mkdir(exist_ok=True)
        data = postgres.data_dir_for(comp)
        if not (data / "PG_VERSION").exists():
            self._log("initialising PostgreSQL data directory")
            postgres.initdb(data, self.run.postgres_password_file, self.run.log("postgres"))
        argv = postgres.server_argv(data, self.topology.host, self.topology.postgres_port)
        self._spawn("postgres", argv, marker=str(data), user=postgres.service_user(), cwd=data)

    def current_master(self) -> tuple[str, int] | None:
        """The master most sentinels name, else a live node that says it is master."""
        votes: dict[tuple[str, int], int] = {}
        for s in self.sentinels():
            m = redis_servers.sentinel_master(self.topology.host, s.port)
            if m is not None:
                votes[m] = votes.get(m, 0) + 1
        if votes:
            return max(votes, key=lambda m: votes[m])
        for n in self.nodes():
            info = redis_servers.replication(self.topology.host, n.port)
            if info is not None and info.get("role") == "master":
                return (self.topology.host, n.port)
        return None

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
            if not conf.exists() or not redis_servers.sentinel_conf_matches(conf, s.port, known_ports):
                conf.write_text(redis_servers.sentinel_conf(host, s.port, workdir, master))
            self._spawn(s.name, [redis_servers.REDIS_SENTINEL, str(conf)], marker=str(s.port))

    def start_node(self, name: str, master: tuple[str, int] | None = None) -> None:
        """(Re)start one node of the gateway's group, as a replica unless it is the current master."""
        host = self.topology.host
        node = self.endpoint(name)
        master = master or self.current_master() or (host, self.nodes()[0].port)
        workdir = self.run.component_dir(name)
        workdir.mkdir(exist_ok=True)
        conf = workdir / "redis.conf"
        replica_of = None if master == (host, node.port) else master
        conf.write_text(redis_servers.gateway_node_conf(host, node.port, workdir, replica_of))
        self._spawn(name, [redis_servers.REDIS_SERVER, str(conf)], marker=str(node.port))

    def _start_context_redis(self) -> None:
        if self.record("redis-context") is not None:
            return
        port = self.topology.redis_context_port
        workdir = self.run.component_dir("redis-context")
        workdir.mkdir(exist_ok=True)
        conf = workdir / "redis.conf"
        conf.write_text(redis_servers.context_conf(self.topology.host, port, workdir))
        self._spawn("redis-context", [redis_servers.REDIS_SERVER, str(conf)], marker=str(port))

    def group_ready(self) -> bool:
        """Replication linked (2 online replicas) and every sentinel agrees on the master and its peers."""
        host = self.topology.host
        master = self.current_master()
        if master is None or redis_servers.online_replicas(*master) < 2:
            return False
        for s in self.sentinels():
            if redis_servers.sentinel_master(host, s.port) != master:
                return False
            info = redis_servers.sentinel_master_info(host, s.port)
            if info is None or "down" in info.get("flags", "down"):
                return False
            if int(info.get("num-slaves", 0)) < 2 or int(info.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def _wait_infrastructure(self, timeout: float) -> None:
        t = self.topology
        wait_until(
            lambda: postgres.ensure_database(t.host, t.postgres_port, self.postgres_password),
            timeout=timeout,
            interval=0.2,
            what=f"PostgreSQL on {t.addr(t.postgres_port)} (log: {self.run.log('postgres')})",
        )
        wait_until(
            lambda: redis_servers.ping(t.host, t.redis_context_port),
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
        if self.record(name) is None:
            env = {**os.environ, "KUBERNAUT_CONFIG": str(self.run.config_file)}
            if name == "context-api":
                env["KUBERNAUT_CONTEXT_API_TOKEN_FILE"] = str(self.context_api_token_file)
                env["KUBERNAUT_GATEWAY_URL"] = self.url("gateway")
                env["KUBERNAUT_GATEWAY_TOKEN_FILE"] = str(self.ui_gateway_token_file)
            argv = [sys.executable, "-m", "kubernaut", name, "--config", str(self.run.config_file)]
            marker = f"-m kubernaut {name}"
            self._spawn(name, argv, marker=marker, env=env)
        self.wait_service_ready(name, timeout)

    def _exited(self, name: str) -> str:
        """The error for a process that died while starting: its log's last line says why."""
        log = self.run.log(name)
        try:
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        last = f": {lines[-1].strip()[:300]}" if lines else ""
        return f"{name} exited during start-up{last} (log: {log})"

    def wait_service_ready(self, name: str, timeout: float = 30.0) -> None:
        url = f"{self.url(name)}/readyz"

        def ready() -> bool:
            if self.record(name) is None:
                raise RuntimeError(self._exited(name))
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(ready, timeout=timeout, interval=0.1, what=f"{name} at {url}")

    # -- down ----------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every recorded process (alerting and services first, PostgreSQL last); return the names."""
        order = [
            *ALERTING,
            *SERVICES,
            *(s.name for s in self.sentinels()),
            *(n.name for n in self.nodes()),
            "redis-context",
            "postgres",
        ]
        extra = [name for name in self.table.load() if name not in order]  # e.g. a benchmark's own processes
        return self._stop([*extra, *order])

    def _stop(self, names: list[str]) -> list[str]:
        records = self.table.load()
        stopped = []
        for name in names:
            rec = records.get(name)
            if rec is None:
                continue
            if is_alive(rec):
                # PostgreSQL's SIGTERM waits for clients to leave; SIGINT is its "fast" shutdown.
                stop(rec, sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
                stopped.append(name)
                self._log(f"stopped {name} (pid {rec.pid})")
            self.table.remove(name)
        return stopped

    def destroy(self) -> list[str]:
        """``down``, then delete the run directory and any data directory kept outside it."""
        stopped = self.down()
        comp = self.run.component_dir("postgres")
        if comp.exists():
            data = postgres.data_dir_for(comp)
            if not data.is_relative_to(self.run.root):
                shutil.rmtree(data.parent, ignore_errors=True)
        shutil.rmtree(self.run.root, ignore_errors=True)
        return stopped

    def stop_component(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop one recorded process with ``sig`` and wait until it has exited."""
        rec = self.table.get(name)
        if rec is not None:
            stop(rec, sig=sig)

    def signal_component(self, name: str, sig: signal.Signals) -> bool:
        """Send ``sig`` (e.g. SIGSTOP/SIGCONT) to a recorded component without waiting for anything."""
        rec = self.table.get(name)
        return rec is not None and signal_process(rec, sig)

    def start_redis_context(self, timeout: float = 30.0) -> None:
        """(Re)start the Context-API's Redis unless running, and wait until it answers."""
        self._start_context_redis()
        host, port = self.topology.host, self.topology.redis_context_port
        wait_until(lambda: redis_servers.ping(host, port), timeout=timeout, what=f"Redis on {host}:{port}")

    # -- status --------------------------------------------------------------------------------------

    def _proc(self, name: str) -> dict[str, Any]:
        rec = self.table.get(name)
        return {"pid": rec.pid if rec else None, "alive": bool(rec and is_alive(rec))}

    def status(self) -> dict[str, Any]:
        t = self.topology
        master = self.current_master()
        info = None
        for s in self.sentinels():
            info = redis_servers.sentinel_master_info(t.host, s.port)
            if info is not None:
                break
        replicas = []
        for n in self.nodes():
            if master is not None and n.port == master[1]:
                continue
            rep = redis_servers.replication(t.host, n.port)
            replicas.append(
                {"addr": t.addr(n.port), "role": rep.get("role") if rep else None, **self._proc(n.name)}
            )
        has_secrets = self.run.postgres_password_file.exists()
        return {
            "run_dir": str(self.run.root),
            "redis_gateway": {
                "master_name": MASTER_NAME,
                "master": f"{master[0]}:{master[1]}" if master else None,
                "replicas": replicas,
                "nodes": {n.name: {"addr": t.addr(n.port), **self._proc(n.name)} for n in self.nodes()},
                "sentinels": [{"addr": t.addr(s.port), **self._proc(s.name)} for s in self.sentinels()],
                "quorum": int(info["quorum"]) if info else QUORUM,
            },
            "redis_context": {"addr": t.addr(t.redis_context_port), **self._proc("redis-context")},
            "postgres": {
                "dsn": self.postgres_dsn if has_secrets else None,
                "addr": t.addr(t.postgres_port),
                **self._proc("postgres"),
            },
            "gateway": {
                "url": self.url("gateway"),
                "token": self.gateway_token if self.run.gateway_tokens_file.exists() else None,
                **self._proc("gateway"),
            },
            "context_api": {"url": self.url("context-api"), **self._proc("context-api")},
            **({"alerting": self.alerting_status()} if any(map(self.table.get, ALERTING)) else {}),
        }

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
                "kubernaut.localstack.signal_source",
                f"--file={run.signals_file}",
                f"--host={t.host}",
                f"--port={t.signal_source_port}",
            ]
            self._spawn("signal-source", argv, marker=f"--file={run.signals_file}")
        if self.record("alertmanager") is None:
            comp = run.component_dir("alertmanager")
            (comp / "data").mkdir(parents=True, exist_ok=True)
            conf = comp / "alertmanager.yml"
            webhook = self.url("gateway") + alerting.WEBHOOK_PATH
            conf.write_text(alerting.alertmanager_yaml(webhook, run.alertmanager_token_file))
            argv = alerting.alertmanager_argv(conf, comp / "data", t.addr(t.alertmanager_port))
            self._spawn("alertmanager", argv, marker=f"--config.file={conf}")
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
            self._spawn("prometheus", argv, marker=f"--config.file={conf}")
        probes = {"signal-source": "/metrics", "alertmanager": "/-/ready", "prometheus": "/-/ready"}
        for name, path in probes.items():
            url = self.url(name) + path

            def ready(name: str = name, url: str = url) -> bool:
                if self.record(name) is None:
                    raise RuntimeError(self._exited(name))
                return alerting.http_ok(url)

            wait_until(ready, timeout=timeout, interval=0.1, what=f"{name} at {url}")

    def set_signals(self, signals: list[Signal]) -> None:
        """Replace the signal source's series; the local rules see them at the next scrape (1 s)."""
        write_signals(self.run.signals_file, signals)

    def stop_alerting(self) -> list[str]:
        """Stop Prometheus, Alertmanager and the signal source only; return the names stopped."""
        return self._stop(list(ALERTING))

    def alerting_status(self) -> dict[str, Any]:
        return {name: {"url": self.url(name), **self._proc(name)} for name in ALERTING}

    def wait_for_new_master(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Block until a majority of sentinels names a master other than ``old``; return it."""
        start = time.monotonic()
        result: list[tuple[str, int]] = []

        def switched() -> bool:
            m = self.current_master()
            if m is not None and m != old:
                result.append(m)
                return True
            return False

        wait_until(
            switched,
            timeout=timeout,
            interval=0.05,
            what=f"a new master (old {old}) after {time.monotonic() - start:.0f}s",
        )
        return result[-1]
