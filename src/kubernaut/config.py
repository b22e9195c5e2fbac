"""Typed settings for both services: a YAML file plus ``KUBERNAUT_*`` environment overrides.

The file has one section per service (``gateway``, ``context_api``) and a shared ``postgres`` section.
Environment variables override the file with ``__`` between levels, e.g.
``KUBERNAUT_GATEWAY__HTTP__PORT=9000``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from kubernaut.validation import field_errors

CONFIG_ENV = "KUBERNAUT_CONFIG"

Port = Annotated[int, Field(ge=1, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    """A settings block: unknown keys are refused, values frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerTls(Section):
    """HTTPS for a service's listener (e.g. Alertmanager -> gateway, which carries the bearer token)."""

    certfile: Path
    keyfile: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    tls: ServerTls | None = None
    # A request line plus headers past this size gets 431; a head or body slower than its timeout, 408.
    max_header_bytes: Annotated[int, Field(ge=1024, le=1048576)] = 16384
    header_timeout_s: PositiveSeconds = 10.0
    body_timeout_s: PositiveSeconds = 30.0


class GatewayHttpSettings(HttpSettings):
    # Worker processes sharing the port; unset: one per core the gateway may run on.
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    # SO_REUSEPORT: several gateway instances (not workers of one) may listen on one port.
    reuse_port: bool = False


class RedisTimeouts(Section):
    """Socket bounds of a service's Redis client: connect, each command, and the health check."""

    connect_s: PositiveSeconds = 0.5
    # The gateway's defaults: long enough for a loaded 2-core host, short against Sentinel's 5 s detection.
    socket_s: PositiveSeconds = 1.0


class RedisTls(Section):
    """TLS to Redis (and to the sentinels of a Sentinel group): present means on."""

    ca_file: Path | None = None  # None: the system's trust store
    certfile: Path | None = None  # a client certificate, when the server asks for one
    keyfile: Path | None = None
    check_hostname: bool = True


class StandaloneRedis(Section):
    """The seed's shape: one Redis server (the Context-API's cache)."""

    host: str = "127.0.0.1"
    port: Port = 6379
    db: Annotated[int, Field(ge=0, le=15)] = 0
    username: str | None = None  # an ACL user; None: the default user
    password: SecretStr | None = None
    tls: RedisTls | None = None
    timeouts: RedisTimeouts = RedisTimeouts()

    def describe(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def _split(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{item!r} is not host:port")
    return host, int(port)


class SentinelRedis(Section):
    """A Sentinel-managed group (the gateway's): the master is always found through Sentinel."""

    sentinels: Annotated[list[str], Field(min_length=1)]
    master_name: str
    db: Annotated[int, Field(ge=0, le=15)] = 0
    username: str | None = None  # the nodes' ACL user; None: the default user
    password: SecretStr | None = None
    sentinel_username: str | None = None  # the sentinels' ACL user
    sentinel_password: SecretStr | None = None
    tls: RedisTls | None = None
    timeouts: RedisTimeouts = RedisTimeouts()
    # host:port of a node as Sentinel names it -> host:port to connect to instead (the local stack's
    # chaos proxies); empty in production.
    address_map: dict[str, str] = {}

    @field_validator("sentinels")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for item in value:
            _split(item)
        return value

    @field_validator("address_map")
    @classmethod
    def _mapped_host_port(cls, value: dict[str, str]) -> dict[str, str]:
        for item in (*value, *value.values()):
            _split(item)
        return value

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [_split(s) for s in self.sentinels]

    def mapped_addresses(self) -> dict[tuple[str, int], tuple[str, int]]:
        return {_split(k): _split(v) for k, v in self.address_map.items()}

    def describe(self) -> str:
        return f"sentinel://{','.join(self.sentinels)}/{self.master_name}/{self.db}"


def _redis_shape(value: Any) -> str:
    if isinstance(value, dict):
        return "sentinel" if "sentinels" in value else "standalone"
    return "sentinel" if isinstance(value, SentinelRedis) else "standalone"


RedisSettings = Annotated[
    Annotated[StandaloneRedis, Tag("standalone")] | Annotated[SentinelRedis, Tag("sentinel")],
    Discriminator(_redis_shape),
]


ServiceName = Literal["gateway", "context_api"]


class PostgresSettings(Section):
    # The schema owner's DSN: migrations and tools. A service connects with its own role's DSN when set.
    dsn: SecretStr = SecretStr("postgresql://kubernaut@127.0.0.1:15432/kubernaut")
    # The Context-API's reads (a standby, e.g. CloudNativePG's -ro Service); writes always use ``dsn``.
    read_dsn: SecretStr | None = None
    gateway_dsn: SecretStr | None = None
    context_api_dsn: SecretStr | None = None
    # True: a service applies pending migrations with ``dsn`` at start. False: it only checks the schema is
    # current (its own role cannot change it) and refuses to start otherwise; `kubernaut migrate` applies.
    migrate_on_start: bool = True
    min_pool: Annotated[int, Field(ge=1)] = 2
    max_pool: Annotated[int, Field(ge=1)] = 10
    command_timeout_s: PositiveSeconds = 5.0

    def for_service(self, service: ServiceName) -> PostgresSettings:
        """These settings with ``dsn`` replaced by the service's own role's DSN, when one is set."""
        own = self.gateway_dsn if service == "gateway" else self.context_api_dsn
        return self if own is None else self.model_copy(update={"dsn": own})


class StormSettings(Section):
    enabled: bool = True
    rate_threshold: Annotated[int, Field(ge=1)] = 10
    rate_window_s: Annotated[int, Field(ge=1)] = 60
    pattern_threshold: Annotated[int, Field(ge=1)] = 5
    pattern_window_s: Annotated[int, Field(ge=1)] = 120
    inactivity_s: Annotated[int, Field(ge=1)] = 60
    max_window_s: Annotated[int, Field(ge=1)] = 300
    max_affected_resources: Annotated[int, Field(ge=1)] = 1000
    # New members of a committed storm answered from Redis and written with the count flush (docs/gateway.md,
    # "Storm members joined in Redis"); false before a downgrade to a release without it.
    join_in_redis: bool = True


class AlertTimeSettings(Section):
    """When an alert's own startsAt / endsAt are believed (else the receipt time is used)."""

    max_future_skew_s: Annotated[int, Field(ge=0)] = 60
    max_age_s: Annotated[int, Field(ge=1)] = 7 * 24 * 3600


class RateLimitSettings(Section):
    mode: Literal["enforce", "shadow", "off"] = "enforce"
    requests_per_second: Annotated[float, Field(gt=0)] = 100.0
    burst: Annotated[int, Field(ge=1)] = 200


class AuthSettings(Section):
    enabled: bool = True
    tokens_file: Path | None = None


class GatewaySettings(Section):
    http: GatewayHttpSettings = GatewayHttpSettings(port=8080)
    redis: RedisSettings = SentinelRedis(
        sentinels=["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"], master_name="gateway-master"
    )
    key_prefix: str = "gw:"
    allow_shared_redis: bool = False
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    max_alerts_per_request: Annotated[int, Field(ge=1)] = 1000
    dedup_ttl_s: Annotated[int, Field(ge=1)] = 300
    count_flush_interval_s: PositiveSeconds = 1.0
    failover_retry_budget_s: PositiveSeconds = 1.0
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    storm: StormSettings = StormSettings()
    alert_times: AlertTimeSettings = AlertTimeSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    auth: AuthSettings = AuthSettings()
    environments: dict[str, str] = Field(default_factory=dict)


class L2CacheSettings(Section):
    max_entries: Annotated[int, Field(ge=1)] = 10_000
    max_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    ttl_s: PositiveSeconds = 30.0


class L1CacheSettings(Section):
    enabled: bool = True
    ttl_s: Annotated[int, Field(ge=1)] = 300
    max_value_bytes: Annotated[int, Field(ge=1)] = 5 * 1024 * 1024


class BreakerSettings(Section):
    failure_threshold: Annotated[int, Field(ge=1)] = 3
    reset_timeout_s: PositiveSeconds = 5.0


# A cache must fail fast: these apply whenever the context_api.redis section names no timeouts.
CONTEXT_REDIS_TIMEOUTS = RedisTimeouts(connect_s=0.1, socket_s=0.05)


class ContextApiAuthSettings(Section):
    """Bearer tokens with a scope each: ``read`` answers GET, ``write`` also records outcomes."""

    enabled: bool = True
    tokens_file: Path | None = None


class OperatorPageSettings(Section):
    # Where /ui reads the gateway's readiness and Redis group; the token file holds one gateway token.
    gateway_url: str | None = None
    gateway_token_file: Path | None = None


class ContextApiSettings(Section):
    http: HttpSettings = HttpSettings(port=8091)
    ui: OperatorPageSettings = OperatorPageSettings()
    auth: ContextApiAuthSettings = ContextApiAuthSettings()
    redis: RedisSettings = StandaloneRedis(port=16390, timeouts=CONTEXT_REDIS_TIMEOUTS)
    key_prefix: str = "ctx:"
    allow_shared_redis: bool = False
    l1: L1CacheSettings = L1CacheSettings()
    l2: L2CacheSettings = L2CacheSettings()
    breaker: BreakerSettings = BreakerSettings()

    @field_validator("redis", mode="before")
    @classmethod
    def _tight_timeouts(cls, value: Any) -> Any:
        if isinstance(value, dict) and "timeouts" not in value:
            return {**value, "timeouts": CONTEXT_REDIS_TIMEOUTS}
        return value


class Settings(BaseSettings):
    """All settings: defaults, overridden by the YAML file ``$KUBERNAUT_CONFIG``, then ``KUBERNAUT_*``."""

    model_config = SettingsConfigDict(
        env_prefix="KUBERNAUT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Refuse to start with auth off or a placeholder secret (kubernaut.production); the production
    # overlay sets KUBERNAUT_PRODUCTION=true.
    production: bool = False
    gateway: GatewaySettings = GatewaySettings()
    context_api: ContextApiSettings = ContextApiSettings()
    postgres: PostgresSettings = PostgresSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


class ConfigError(Exception):
    """Invalid configuration, rendered as one line naming the field."""


# Discriminated-union tags are pydantic's, not the user's field names.
_UNION_TAGS = ("sentinel", "standalone")


def format_validation_error(err: ValidationError, source: str | None = None) -> str:
    problems = [f"{e.field}: {e.message}" for e in field_errors(err, whole="(root)", skip=_UNION_TAGS)]
    where = f" in {source}" if source else ""
    return f"invalid configuration{where}: " + "; ".join(problems)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``$KUBERNAUT_CONFIG``) and the environment.

    Raises :class:`ConfigError` with a single line naming each offending field.
    """
    file = str(path) if path is not None else os.environ.get(CONFIG_ENV)
    if file is not None and not Path(file).is_file():
        raise ConfigError(f"configuration file {file} does not exist")
    previous = os.environ.get(CONFIG_ENV)
    try:
        if file is not None:
            os.environ[CONFIG_ENV] = file
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, file)) from None
    except (OSError, ValueError) as err:  # unreadable file or YAML syntax
        raise ConfigError(f"cannot read configuration {file}: {err}".replace("\n", " ")) from None
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous
