from __future__ import annotations

from pathlib import Path

import pytest

from kubernaut.config import ConfigError, SentinelRedis, StandaloneRedis, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert isinstance(s.gateway.redis, SentinelRedis)
    assert s.gateway.redis.master_name == "gateway-master"
    assert s.gateway.redis.sentinel_addresses()[0] == ("127.0.0.1", 26379)
    assert isinstance(s.context_api.redis, StandaloneRedis)
    assert (s.gateway.http.port, s.context_api.http.port) == (8080, 8091)
    assert (s.gateway.key_prefix, s.context_api.key_prefix) == ("gw:", "ctx:")


def test_seed_standalone_shape_and_sentinel_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
gateway:
  redis:
    sentinels: ["redis-gateway-ha.kubernaut-system:26379"]
    master_name: gateway-master
    db: 0
context_api:
  redis:
    host: redis.kubernaut-system.svc.cluster.local
    port: 6379
    db: 0
""",
    )
    s = load_settings(path)
    assert isinstance(s.gateway.redis, SentinelRedis)
    assert isinstance(s.context_api.redis, StandaloneRedis)
    assert s.context_api.redis.host == "redis.kubernaut-system.svc.cluster.local"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "gateway:\n  http:\n    port: 9000\n")
    monkeypatch.setenv("KUBERNAUT_GATEWAY__HTTP__PORT", "9100")
    assert load_settings(path).gateway.http.port == 9100


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("gateway:\n  colour: blue\n", "gateway.colour: unknown field"),
        (
            "gateway:\n  redis:\n    sentinels: ['127.0.0.1:26379']\n",
            "gateway.redis.master_name: Field required",
        ),
        ("context_api:\n  redis:\n    port: 70000\n", "context_api.redis.port: Input should be less than or"),
        ("gateway:\n  redis:\n    sentinels: ['nohost']\n    master_name: m\n", "gateway.redis.sentinels"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    assert field in message


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
