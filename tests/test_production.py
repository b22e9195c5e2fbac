"""Production mode refuses what the committed manifests carry as placeholders, and auth turned off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubernaut.config import ConfigError, Settings
from kubernaut.production import check

GOOD_DSN = "postgresql://kubernaut_gateway:s3cr3t@db:5432/kubernaut"


def settings(tmp_path: Path, *, placeholder_in: str = "", **top: Any) -> Settings:
    def value(field: str, good: str) -> str:
        return f"change-me-{field}" if field == placeholder_in else good

    gw_tokens, ctx_tokens = tmp_path / "gw-tokens", tmp_path / "ctx-tokens"
    gw_tokens.write_text(yaml.safe_dump({"am": value("gateway-token", "tok-1")}))
    ctx_tokens.write_text(yaml.safe_dump({"ai": {"token": value("context-token", "tok-2"), "scope": "read"}}))
    return Settings(
        **top,
        gateway={
            "redis": {
                "sentinels": ["s:26379"],
                "master_name": "gateway-master",
                "password": value("redis", "r3dis"),
                "sentinel_password": value("sentinel", "s3ntinel"),
            },
            "auth": {"tokens_file": gw_tokens},
        },
        context_api={"redis": {"password": value("ctx-redis", "c4che")}, "auth": {"tokens_file": ctx_tokens}},
        postgres={
            "gateway_dsn": value("gateway-dsn", GOOD_DSN),
            "context_api_dsn": "postgresql://kubernaut_context_api:s3cr3t@db/kubernaut",
        },
    )


def test_outside_production_nothing_is_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, placeholder_in="redis")
    check(s, "gateway")


def test_real_secrets_pass_in_production(tmp_path: Path) -> None:
    s = settings(tmp_path, production=True)
    check(s, "gateway")
    check(s, "context_api")


@pytest.mark.parametrize(
    ("field", "service", "named"),
    [
        ("redis", "gateway", "gateway.redis.password"),
        ("sentinel", "gateway", "gateway.redis.sentinel_password"),
        ("gateway-token", "gateway", "gateway.auth.tokens_file"),
        ("gateway-dsn", "gateway", "postgres.gateway_dsn"),
        ("ctx-redis", "context_api", "context_api.redis.password"),
        ("context-token", "context_api", "context_api.auth.tokens_file"),
    ],
)
def test_a_placeholder_is_refused_naming_its_field(
    tmp_path: Path, field: str, service: Any, named: str
) -> None:
    s = settings(tmp_path, placeholder_in=field, production=True)
    with pytest.raises(
        ConfigError, match=f"refusing to start in production mode: {named}: holds a placeholder"
    ):
        check(s, service)


def test_auth_off_and_no_redis_password_are_refused(tmp_path: Path) -> None:
    s = Settings(production=True, context_api={"auth": {"enabled": False}})
    with pytest.raises(ConfigError) as err:
        check(s, "context_api")
    assert "context_api.auth.enabled: must be true in production" in str(err.value)
    assert "context_api.redis.password: required in production" in str(err.value)


def test_the_service_command_refuses_with_one_line(tmp_path: Path) -> None:
    """As the production overlay runs it (KUBERNAUT_PRODUCTION=true), with the committed placeholders."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("alertmanager: change-me-alertmanager-token\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"auth": {"tokens_file": str(tokens)}}}))
    env = {
        **os.environ,
        "KUBERNAUT_PRODUCTION": "true",
        "KUBERNAUT_GATEWAY__REDIS__PASSWORD": "change-me-redis",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kubernaut", "gateway", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "refusing to start in production mode" in lines[0]
    assert "gateway.redis.password" in lines[0]
    assert "gateway.auth.tokens_file" in lines[0]
