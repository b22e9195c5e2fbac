"""Production mode (``production: true``, e.g. ``KUBERNAUT_PRODUCTION=true``): a service refuses to start
with authentication off or with a secret still holding a committed placeholder value."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from kubernaut.config import ConfigError, SentinelRedis, ServiceName, Settings

# Every placeholder committed in deploy/kubernetes (and in any example) contains this.
PLACEHOLDER = "change-me"


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


def _file(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from None


def check(settings: Settings, service: ServiceName) -> None:
    """Raise ConfigError naming every field that is unsafe for production; nothing when not production."""
    if not settings.production:
        return
    pg = settings.postgres
    own_dsn = pg.gateway_dsn if service == "gateway" else pg.context_api_dsn
    if service == "gateway":
        gw = settings.gateway
        section, auth_enabled, tokens = "gateway", gw.auth.enabled, gw.auth.tokens_file
        redis = gw.redis
    else:
        ctx = settings.context_api
        section, auth_enabled, tokens = "context_api", ctx.auth.enabled, ctx.auth.tokens_file
        redis = ctx.redis
    secrets = {
        f"{section}.redis.password": _secret(redis.password),
        f"{section}.auth.tokens_file": _file(tokens),
        f"postgres.{service}_dsn" if own_dsn is not None else "postgres.dsn": _secret(own_dsn or pg.dsn),
    }
    if isinstance(redis, SentinelRedis):
        secrets[f"{section}.redis.sentinel_password"] = _secret(redis.sentinel_password)
    problems = [
        f"{field}: holds a placeholder ({PLACEHOLDER}...)" for field, v in secrets.items() if PLACEHOLDER in v
    ]
    if not auth_enabled:
        problems.insert(0, f"{section}.auth.enabled: must be true in production")
    if redis.password is None:
        problems.append(f"{section}.redis.password: required in production")
    if problems:
        raise ConfigError("refusing to start in production mode: " + "; ".join(problems))
