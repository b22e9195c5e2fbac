"""Each service's ConfigMap is a configuration file the service itself loads, with the pod's environment.

The environment is the Deployment's, with Secret references resolved from the rendered Secrets, so the
test sees what the container would: the file plus KUBERNAUT_* overrides for passwords and the DSN.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from kubernaut.config import SentinelRedis, ServiceName, Settings, StandaloneRedis, load_settings
from kubernaut.store import roles
from tests.deploy.manifests import (
    NAMESPACE,
    OVERLAYS,
    Rendered,
    container,
    container_port,
    render,
    resolve_env,
)

CONFIG_MAPS = {"gateway": "gateway-config", "context-api": "context-api-config"}


def load_as_the_pod_would(
    rendered: Rendered, service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    deployment = rendered.get("Deployment", service)
    c = container(deployment, service)
    config_arg = c["args"][c["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    volume = next(n for n, v in volumes.items() if v.get("configMap", {}).get("name") == CONFIG_MAPS[service])
    mount_dir, _, key = config_arg.rpartition("/")
    assert mounts[volume] == mount_dir, "--config must point into the mounted ConfigMap"

    file = tmp_path / key
    file.write_text(rendered.config_file(CONFIG_MAPS[service], key))
    for name, value in resolve_env(rendered, c).items():
        monkeypatch.setenv(name, value)
    return load_settings(file)


def service_port(rendered: Rendered, host: str, port: int) -> None:
    """``host`` is <service>.<namespace>.svc.cluster.local and that Service exposes ``port``."""
    name, namespace, *rest = host.split(".")
    assert (namespace, rest) == (NAMESPACE, ["svc", "cluster", "local"]), host
    ports = [p["port"] for p in rendered.get("Service", name)["spec"]["ports"]]
    assert port in ports, f"Service {name} does not expose {port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_config_loads_with_sentinel_and_secrets(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = render(overlay)
    s = load_as_the_pod_would(r, "gateway", tmp_path, monkeypatch)
    redis = s.gateway.redis
    assert isinstance(redis, SentinelRedis)
    assert redis.sentinels == ["redis-gateway-ha.kubernaut-system.svc.cluster.local:26379"]
    assert redis.master_name == "gateway-master"
    for host, port in redis.sentinel_addresses():
        service_port(r, host, port)
    # its own ACL user on the nodes and on the sentinels
    assert (redis.username, redis.sentinel_username) == ("gateway", "gateway")
    assert redis.password is not None
    assert redis.password.get_secret_value() == r.secret_value("redis-gateway-auth", "gateway-password")
    assert redis.sentinel_password is not None
    assert redis.sentinel_password.get_secret_value() == r.secret_value(
        "redis-gateway-auth", "gateway-password"
    )

    deployment = r.get("Deployment", "gateway")
    assert s.gateway.http.host == "0.0.0.0"
    assert s.gateway.http.port == container_port(container(deployment, "gateway"), "http")
    # the tokens file is the mounted Secret's key
    assert s.gateway.auth.enabled
    assert s.gateway.auth.tokens_file is not None
    mounts = {m["mountPath"]: m["name"] for m in container(deployment, "gateway")["volumeMounts"]}
    volume = mounts[str(s.gateway.auth.tokens_file.parent)]
    secret = next(
        v["secret"]["secretName"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v["name"] == volume
    )
    tokens = yaml.safe_load(r.secret_value(secret, s.gateway.auth.tokens_file.name))
    assert isinstance(tokens, dict)
    assert all(isinstance(v, str) for v in tokens.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_context_api_config_loads_with_its_own_standalone_redis(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = render(overlay)
    s = load_as_the_pod_would(r, "context-api", tmp_path, monkeypatch)
    redis = s.context_api.redis
    assert isinstance(redis, StandaloneRedis)
    assert (redis.host, redis.port, redis.db) == ("redis.kubernaut-system.svc.cluster.local", 6379, 0)
    service_port(r, redis.host, redis.port)
    assert redis.username == "context-api"
    assert redis.password is not None
    assert redis.password.get_secret_value() == r.secret_value("redis-auth", "context-api-password")
    assert s.context_api.auth.enabled
    assert s.context_api.auth.tokens_file is not None
    assert s.context_api.http.port == container_port(
        container(r.get("Deployment", "context-api"), "context-api"), "http"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["gateway", "context-api"])
def test_postgres_dsn_reaches_the_bundled_database_with_its_password(
    overlay: str, service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each service connects as its own role (created by the bundled database's init script, with the
    password the script gets), never as the superuser, and checks the schema instead of migrating."""
    r = render(overlay)
    s = load_as_the_pod_would(r, service, tmp_path, monkeypatch)
    key: ServiceName = "gateway" if service == "gateway" else "context_api"
    assert s.postgres.migrate_on_start is False
    dsn = urlsplit(s.postgres.for_service(key).dsn.get_secret_value())
    assert dsn.hostname is not None
    assert dsn.port is not None
    clusters = r.of_kind("Cluster")
    if clusters:  # production: CloudNativePG's -rw Service (the operator creates it), the service's role
        spec = clusters[0]["spec"]
        name = clusters[0]["metadata"]["name"]
        assert dsn.hostname.split(".")[:2] == [f"{name}-rw", NAMESPACE]
        assert dsn.port == 5432
        [role] = [m for m in spec["managed"]["roles"] if m["name"] == dsn.username]
        assert dsn.username == {"gateway": roles.GATEWAY, "context-api": roles.CONTEXT_API}[service]
        assert dsn.password == r.secret_value(role["passwordSecret"]["name"], "password")
        assert dsn.path == "/" + spec["bootstrap"]["initdb"]["database"]
        return
    service_port(r, dsn.hostname, dsn.port)
    postgres = container(r.get("StatefulSet", "postgres"), "postgres")
    env = resolve_env(r, postgres)
    assert dsn.username == {"gateway": roles.GATEWAY, "context-api": roles.CONTEXT_API}[service]
    assert dsn.username != env["POSTGRES_USER"]
    assert (
        dsn.password == env[{"gateway": "GATEWAY_PASSWORD", "context-api": "CONTEXT_API_PASSWORD"}[service]]
    )
    assert dsn.path == "/" + env["POSTGRES_DB"]
    init = r.config_file("postgres-init", "init-roles.sh")
    assert f"CREATE ROLE {dsn.username} LOGIN NOSUPERUSER" in init


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_as_the_owner_in_an_init_container(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = render(overlay)
    deployment = r.get("Deployment", "gateway")
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][0] == "migrate"
    assert "--require-roles" in init["args"]  # no migration without the services' grants
    env = resolve_env(r, init)
    owner = urlsplit(env["KUBERNAUT_POSTGRES__DSN"])
    assert owner.username == roles.OWNER
    assert owner.password
    clusters = r.of_kind("Cluster")
    if clusters:  # production: the password the Cluster bootstraps its owner with
        initdb = clusters[0]["spec"]["bootstrap"]["initdb"]
        assert owner.username == initdb["owner"]
        assert owner.password == r.secret_value(initdb["secret"]["name"], "password")
    else:
        assert (
            owner.password
            == resolve_env(r, container(r.get("StatefulSet", "postgres"), "postgres"))["OWNER_PASSWORD"]
        )
    # the owner's DSN reaches no long-running container
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        assert "owner-dsn" not in str(c.get("env"))
        assert owner.password not in str(resolve_env(r, c))


def test_dev_secrets_hold_placeholders_only() -> None:
    secrets = render("dev").of_kind("Secret")
    assert secrets
    for secret in secrets:
        for key, value in secret["stringData"].items():
            if key == "username":  # a basic-auth Secret's user name (CloudNativePG's owner) is no secret
                continue
            assert "change-me" in value, f"{secret['metadata']['name']}/{key} looks like a real value"


def test_production_applies_no_secret_and_runs_in_production_mode() -> None:
    """The committed placeholders never reach a production cluster: the operator creates the Secrets,
    and the services, in production mode, refuse any value still holding a placeholder."""
    r = render("production")
    assert r.of_kind("Secret") == []
    for service in ("gateway", "context-api"):
        env = resolve_env(r, container(r.get("Deployment", service), service))
        assert env["KUBERNAUT_PRODUCTION"] == "true"
    dev = render("dev")
    for service in ("gateway", "context-api"):
        assert "KUBERNAUT_PRODUCTION" not in resolve_env(
            dev, container(dev.get("Deployment", service), service)
        )
