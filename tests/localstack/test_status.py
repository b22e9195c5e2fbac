"""The typed stack status renders exactly the `kubernaut status --json` shape scripts read."""

from __future__ import annotations

from kubernaut_tools.localstack.status import (
    ContextApi,
    ContextRedis,
    Gateway,
    GatewayGroup,
    Listener,
    PatroniMember,
    Postgres,
    PostgresDsns,
    PostgresMember,
    Proc,
    Replica,
    Service,
    StackStatus,
)

UP, DOWN = Proc(11, True), Proc(None, False)


def _status(postgres: Postgres, alerting: dict[str, Service]) -> StackStatus:
    return StackStatus(
        run_dir="/run",
        redis_gateway=GatewayGroup(
            master_name="gateway-master",
            master="127.0.0.1:16379",
            replicas=[Replica("127.0.0.1:16380", "slave", UP)],
            nodes={"redis-gateway-0": Listener("127.0.0.1:16379", UP)},
            sentinels=[Listener("127.0.0.1:26379", UP)],
            quorum=2,
            password="p",
            sentinel_password=None,
            users={"gateway": "u"},
        ),
        redis_context=ContextRedis("127.0.0.1:16390", "c", {"context-api": None}, DOWN),
        postgres=postgres,
        gateway=Gateway("http://127.0.0.1:8080", UP, token="t"),
        context_api=ContextApi("http://127.0.0.1:8091", DOWN),
        alerting=alerting,
    )


def test_single_postgres_and_no_alerting() -> None:
    single = Postgres(
        mode="single",
        addr="127.0.0.1:15432",
        primary="127.0.0.1:15432",
        members=[PostgresMember("postgres", "127.0.0.1:15432", 11, "primary", sync=False)],
        proc=UP,
    )
    out = _status(single, {}).as_json()
    assert list(out) == ["run_dir", "redis_gateway", "redis_context", "postgres", "gateway", "context_api"]
    assert out["redis_gateway"] == {
        "master_name": "gateway-master",
        "master": "127.0.0.1:16379",
        "replicas": [{"addr": "127.0.0.1:16380", "role": "slave", "pid": 11, "alive": True}],
        "nodes": {"redis-gateway-0": {"addr": "127.0.0.1:16379", "pid": 11, "alive": True}},
        "sentinels": [{"addr": "127.0.0.1:26379", "pid": 11, "alive": True}],
        "quorum": 2,
        "password": "p",
        "sentinel_password": None,
        "users": {"gateway": "u"},
    }
    assert list(out["redis_gateway"]) == [
        "master_name",
        "master",
        "replicas",
        "nodes",
        "sentinels",
        "quorum",
        "password",
        "sentinel_password",
        "users",
    ]
    assert list(out["redis_context"]) == ["addr", "password", "users", "pid", "alive"]
    assert list(out["postgres"]) == [
        "mode",
        "addr",
        "primary",
        "members",
        "pid",
        "alive",
        "dsn",
        "read_dsn",
        "gateway_dsn",
        "context_api_dsn",
        "admin_dsn",
    ]
    assert out["postgres"]["members"] == [
        {"name": "postgres", "addr": "127.0.0.1:15432", "pid": 11, "role": "primary", "sync": False}
    ]
    assert out["gateway"] == {"url": "http://127.0.0.1:8080", "token": "t", "pid": 11, "alive": True}
    assert list(out["context_api"]) == ["url", "token", "read_token", "pid", "alive"]


def test_ha_postgres_and_alerting() -> None:
    member = PostgresMember(
        "pg-0", "127.0.0.1:15441", 12, "standby", sync=True, patroni=PatroniMember(0, 13, "http://x")
    )
    ha = Postgres(
        mode="ha",
        addr=None,
        primary=None,
        members=[member],
        proc=DOWN,
        etcd=Listener("127.0.0.1:15461", UP),
        dsns=PostgresDsns(dsn="d", read_dsn="r"),
    )
    status = _status(ha, {"prometheus": Service("http://127.0.0.1:9090", UP)})
    out = status.as_json()
    assert list(out)[-1] == "alerting"
    assert out["alerting"] == {"prometheus": {"url": "http://127.0.0.1:9090", "pid": 11, "alive": True}}
    assert list(out["postgres"])[:7] == ["mode", "addr", "primary", "members", "etcd", "pid", "alive"]
    assert out["postgres"]["members"][0] == {
        "name": "pg-0",
        "addr": "127.0.0.1:15441",
        "pid": 12,
        "role": "standby",
        "sync": True,
        "lag": 0,
        "patroni_pid": 13,
        "patroni_api": "http://x",
    }
    assert (out["postgres"]["dsn"], out["postgres"]["read_dsn"], out["postgres"]["admin_dsn"]) == (
        "d",
        "r",
        None,
    )
    assert status.alerting_running
    assert not status.services_running  # the Context-API is down
