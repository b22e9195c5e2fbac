"""Where each part of the local stack listens and keeps its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MASTER_NAME = "gateway-master"
QUORUM = 2
DOWN_AFTER_MS = 5000
FAILOVER_TIMEOUT_MS = 10000
PARALLEL_SYNCS = 1


@dataclass(frozen=True)
class Topology:
    """The local defaults of DESIGN.md, all shifted by ``offset`` so several stacks can coexist."""

    host: str = "127.0.0.1"
    offset: int = 0

    def _p(self, port: int) -> int:
        return port + self.offset

    @property
    def gateway_http(self) -> int:
        return self._p(8080)

    @property
    def context_http(self) -> int:
        return self._p(8091)

    @property
    def redis_gateway_ports(self) -> tuple[int, ...]:
        return tuple(self._p(p) for p in (16379, 16380, 16381))

    @property
    def proxy_ports(self) -> tuple[int, ...]:
        """The chaos proxies in front of the gateway's Redis nodes (``kubernaut up --chaos-proxy``)."""
        return tuple(self._p(p) for p in (16479, 16480, 16481))

    @property
    def sentinel_ports(self) -> tuple[int, ...]:
        return tuple(self._p(p) for p in (26379, 26380, 26381))

    @property
    def redis_context_port(self) -> int:
        return self._p(16390)

    @property
    def postgres_port(self) -> int:
        return self._p(15432)

    # HA PostgreSQL (``kubernaut up --postgres-ha``): base ports whose last two digits differ from every
    # other base port, so stacks at offsets 100 apart never collide.
    @property
    def postgres_ha_ports(self) -> tuple[int, ...]:
        return tuple(self._p(p) for p in (15441, 15442))

    @property
    def patroni_rest_ports(self) -> tuple[int, ...]:
        return tuple(self._p(p) for p in (15451, 15452))

    @property
    def etcd_client_port(self) -> int:
        return self._p(15461)

    @property
    def etcd_peer_port(self) -> int:
        return self._p(15462)

    @property
    def prometheus_port(self) -> int:
        return self._p(9090)

    @property
    def alertmanager_port(self) -> int:
        return self._p(9093)

    @property
    def signal_source_port(self) -> int:
        return self._p(9099)

    def addr(self, port: int) -> str:
        return f"{self.host}:{port}"


@dataclass(frozen=True)
class Endpoint:
    name: str
    port: int
    kind: str  # redis-gateway | sentinel | redis-context | postgres | service | alerting


@dataclass(frozen=True)
class RunDir:
    """Everything the stack writes lives under one directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def chaos_proxy_marker(self) -> Path:
        """Present when the gateway reaches its Redis nodes through the chaos proxies."""
        return self.root / "chaos-proxy"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def postgres_password_file(self) -> Path:
        return self.secrets / "postgres-password"

    @property
    def postgres_replication_password_file(self) -> Path:
        return self.secrets / "postgres-replication-password"

    @property
    def postgres_ha_marker(self) -> Path:
        """Present when this run directory's PostgreSQL is the Patroni cluster."""
        return self.root / "postgres-ha"

    @property
    def gateway_tokens_file(self) -> Path:
        return self.secrets / "gateway-tokens"

    def postgres_role_password_file(self, role: str) -> Path:
        """A login role's password (owner, services); postgres_password_file is the superuser's."""
        return self.secrets / f"postgres-{role}-password"

    @property
    def redis_gateway_password_file(self) -> Path:
        """The gateway group's nodes: clients, replication (masterauth) and the sentinels' auth-pass."""
        return self.secrets / "redis-gateway-password"

    def redis_user_password_file(self, user: str) -> Path:
        """A service's ACL user on its Redis (``gateway`` on the group's nodes, ``context-api``)."""
        return self.secrets / f"redis-user-{user}-password"

    @property
    def redis_sentinel_password_file(self) -> Path:
        return self.secrets / "redis-sentinel-password"

    @property
    def redis_context_password_file(self) -> Path:
        return self.secrets / "redis-context-password"

    @property
    def context_api_tokens_file(self) -> Path:
        return self.secrets / "context-api-tokens"

    @property
    def alertmanager_token_file(self) -> Path:
        """The gateway token alone, for Alertmanager's ``credentials_file``."""
        return self.secrets / "alertmanager-gateway-token"

    @property
    def signals_file(self) -> Path:
        return self.component_dir("signal-source") / "signals.json"

    def component_dir(self, name: str) -> Path:
        return self.root / name

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"
