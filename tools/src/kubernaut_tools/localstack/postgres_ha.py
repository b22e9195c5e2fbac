"""The local stack's HA PostgreSQL: start, watch and stop etcd and the Patroni nodes by PID."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kubernaut_tools.localstack import patroni, postgres
from kubernaut_tools.localstack.processes import (
    ProcessRecord,
    ProcessTable,
    has_exited,
    is_alive,
    stop,
    wait_until,
)
from kubernaut_tools.localstack.status import PatroniMember, PgRole, PostgresMember
from kubernaut_tools.localstack.topology import RunDir, Topology

ETCD = "etcd"

Spawn = Callable[..., object]


def _dead(rec: ProcessRecord) -> bool:
    return not is_alive(rec)


class PostgresHA:
    def __init__(self, run: RunDir, topology: Topology, table: ProcessTable, spawn: Spawn) -> None:
        self.run = run
        self.topology = topology
        self.table = table
        self._spawn = spawn

    # -- names and addresses -------------------------------------------------------------------------

    def nodes(self) -> list[patroni.Node]:
        t = self.topology
        return [
            patroni.Node(f"postgres-{i}", pg, rest)
            for i, (pg, rest) in enumerate(zip(t.postgres_ha_ports, t.patroni_rest_ports, strict=True))
        ]

    def node(self, name: str) -> patroni.Node:
        return next(n for n in self.nodes() if n.name == name)

    def data_dir(self, name: str) -> Path:
        return postgres.data_dir_for(self.run.component_dir(name))

    def rest_ports(self) -> tuple[int, ...]:
        return self.topology.patroni_rest_ports

    def dsn(self, password: str, *, user: str = postgres.SUPERUSER, attrs: str = "read-write") -> str:
        """Every node, with libpq's ``target_session_attrs``: asyncpg tries them in turn."""
        hosts = ",".join(self.topology.addr(n.pg_port) for n in self.nodes())
        return f"postgresql://{user}:{password}@{hosts}/{postgres.DB_NAME}?target_session_attrs={attrs}"

    def cluster(self) -> dict[str, Any] | None:
        return patroni.cluster(self.topology.host, self.rest_ports())

    def primary(self) -> patroni.Node | None:
        """The node whose Patroni says it is the running leader."""
        name = patroni.leader(self.cluster())
        return self.node(name) if name is not None else None

    # -- up ------------------------------------------------------------------------------------------

    def replication_password(self) -> str:
        f = self.run.postgres_replication_password_file
        if not f.exists():
            f.write_text(secrets.token_urlsafe(24) + "\n")
            f.chmod(0o600)
        return f.read_text().strip()

    def start(self, superuser_password: str, timeout: float = 60.0) -> None:
        """Start etcd and every Patroni node that is not running (the nodes once etcd answers)."""
        self.discard_stale_nodes()
        self._start_etcd()
        t = self.topology
        wait_until(
            lambda: self._alive_or_raise(ETCD) and patroni.etcd_healthy(t.host, t.etcd_client_port),
            timeout=timeout,
            interval=0.1,
            what=f"etcd on {t.addr(t.etcd_client_port)} (log: {self.run.log(ETCD)})",
        )
        replication = self.replication_password()
        for node in self.nodes():
            self.start_node(node.name, superuser_password, replication)

    def _etcd_data(self) -> Path:
        return self.run.component_dir(ETCD) / "data"

    def discard_stale_nodes(self) -> None:
        """A new cluster (no etcd data yet in this run directory) starts with new nodes: data directories
        left in /var/tmp by an earlier run directory at this path (kept after a failed test session) belong
        to another cluster, with other passwords, and would keep Patroni from bootstrapping."""
        if self._etcd_data().exists():
            return
        for node in self.nodes():
            self._stop_orphan_postmaster(node.name)
        self.purge()

    def _start_etcd(self) -> None:
        rec = self.table.get(ETCD)
        if rec is not None and is_alive(rec):
            return
        t = self.topology
        comp = self.run.component_dir(ETCD)
        comp.mkdir(exist_ok=True)
        argv = patroni.etcd_argv(
            self._etcd_data(), t.host, t.etcd_client_port, t.etcd_peer_port, f"kubernaut-{t.offset}"
        )
        self._spawn(ETCD, argv, f"--listen-client-urls=http://{t.host}:{t.etcd_client_port}")

    def start_node(self, name: str, superuser_password: str, replication_password: str) -> None:
        rec = self.table.get(name)
        if rec is not None and is_alive(rec):
            return
        node = self.node(name)
        data = self.data_dir(name)
        work = data.parent
        work.mkdir(parents=True, exist_ok=True)
        user = postgres.service_user()
        self._stop_orphan_postmaster(name)
        conf = work / "patroni.yml"
        t = self.topology
        patroni.write_config(
            conf,
            patroni.node_config(
                node,
                host=t.host,
                etcd_port=t.etcd_client_port,
                data_dir=data,
                work_dir=work,
                superuser_password=superuser_password,
                replication_password=replication_password,
            ),
        )
        if user is not None:
            pw = pwd.getpwnam(user)
            for path in (work, conf):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}
        self._spawn(name, [patroni.PATRONI, str(conf)], str(conf), user=user, cwd=work, env=env)

    def _postmaster(self, name: str) -> ProcessRecord | None:
        data = self.data_dir(name)
        pid = patroni.postmaster_pid(data)
        if pid is None:
            return None
        rec = ProcessRecord(name=f"{name}-postmaster", pid=pid, marker=str(data), argv=[])
        return rec if is_alive(rec) else None

    def _stop_orphan_postmaster(self, name: str) -> None:
        """A postgres left behind by a killed Patroni must not run unmanaged (it could be a primary)."""
        rec = self._postmaster(name)
        if rec is not None:
            stop(rec, sig=signal.SIGINT)

    def _alive_or_raise(self, name: str) -> bool:
        rec = self.table.get(name)
        if rec is None or has_exited(rec):
            log = self.run.log(name)
            try:
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                lines = []
            last = f": {lines[-1].strip()[:300]}" if lines else ""
            raise RuntimeError(f"{name} exited{last} (log: {log})")
        return True

    def ready(self) -> bool:
        t = self.topology
        for node in self.nodes():
            self._alive_or_raise(node.name)
        if not patroni.etcd_healthy(t.host, t.etcd_client_port):
            return False
        return patroni.healthy(self.cluster(), len(self.nodes()))

    def wait_ready(self, timeout: float, log: Path) -> None:
        wait_until(
            self.ready,
            timeout=timeout,
            interval=0.2,
            what=f"the Patroni cluster (a leader and a streaming synchronous standby; logs: {log})",
        )

    # -- faults and down -----------------------------------------------------------------------------

    def kill_node(self, name: str) -> None:
        """kill -9 a node: its Patroni and its postgres, as if the machine died."""
        rec = self.table.get(name)
        postmaster = self._postmaster(name)
        for r in (rec, postmaster):
            if r is not None and is_alive(r):
                os.kill(r.pid, signal.SIGKILL)
        for r in (rec, postmaster):
            if r is not None:
                wait_until(partial(_dead, r), timeout=10, what=f"{r.name} to die")

    def stop_all(self, log: Callable[[str], None]) -> list[str]:
        """Standbys first (none is promoted while the stack goes down), then the leader, then etcd."""
        leader = self.primary()
        names = [n.name for n in self.nodes() if leader is None or n.name != leader.name]
        if leader is not None:
            names.append(leader.name)
        stopped = []
        for name in [*names, ETCD]:
            rec = self.table.get(name)
            if rec is not None and is_alive(rec):
                stop(rec, sig=signal.SIGTERM, timeout=30)
                stopped.append(name)
                log(f"stopped {name} (pid {rec.pid})")
            if name != ETCD:
                self._stop_orphan_postmaster(name)
            self.table.remove(name)
        return stopped

    def purge(self) -> None:
        for node in self.nodes():
            data = self.data_dir(node.name)
            if not data.is_relative_to(self.run.root):
                shutil.rmtree(data.parent, ignore_errors=True)

    # -- status --------------------------------------------------------------------------------------

    def members(self) -> list[PostgresMember]:
        """Each node as Patroni and the process table see it."""
        by_name = {m["name"]: m for m in (self.cluster() or {}).get("members", [])}
        out = []
        for node in self.nodes():
            m = by_name.get(node.name)
            role: PgRole | None = None
            if m is not None and m.get("state") in ("running", "streaming"):
                role = "primary" if m.get("role") in ("leader", "master") else "standby"
            rec = self.table.get(node.name)
            postmaster = self._postmaster(node.name)
            patroni = PatroniMember(
                lag=m.get("lag") if m else None,
                pid=rec.pid if rec and is_alive(rec) else None,
                api=f"http://{self.topology.addr(node.rest_port)}",
            )
            out.append(
                PostgresMember(
                    name=node.name,
                    addr=self.topology.addr(node.pg_port),
                    pid=postmaster.pid if postmaster else None,
                    role=role,
                    sync=bool(m and m.get("role") == "sync_standby"),
                    patroni=patroni,
                )
            )
        return out
