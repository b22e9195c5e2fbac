"""redis-gateway.sh, the gateway group's start-up logic, run for real on loopback.

The script and its static redis.conf / sentinel.conf come from the rendered ConfigMap, the environment
from the rendered StatefulSet; only the addresses differ: three loopback addresses stand in for the
three pods' names (NODE_HOSTS), with Debian's redis-server and redis-sentinel.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel

from kubernaut_tools.localstack import redis_servers as rs
from kubernaut_tools.localstack.processes import wait_until
from tests.conftest import TEST_PORT_OFFSET
from tests.deploy.manifests import container, render, resolve_env

HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
REDIS_PORT = 16400 + TEST_PORT_OFFSET
SENTINEL_PORT = 26400 + TEST_PORT_OFFSET
SCRIPT = "redis-gateway.sh"


class Group:
    """Three "pods" of the StatefulSet, each a redis and a sentinel started by the script."""

    def __init__(self, root: Path) -> None:
        self.root = root
        rendered = render("production")
        self.template = root / "template"
        self.template.mkdir()
        for key, value in rendered.get("ConfigMap", "redis-gateway-config")["data"].items():
            (self.template / key).write_text(value)
        sts = rendered.get("StatefulSet", "redis-gateway")
        self.base_env = {
            k: v
            for k, v in resolve_env(rendered, container(sts, "redis")).items()
            if k not in ("HEADLESS_DOMAIN", "REDISCLI_AUTH")
        }
        self.password = self.base_env["ADMIN_PASSWORD"]  # user admin, on the nodes and the sentinels
        self.master_name = self.base_env["MASTER_NAME"]
        self.procs: dict[tuple[int, str], subprocess.Popen[bytes]] = {}

    def env(self, i: int) -> dict[str, str]:
        node = self.root / f"node-{i}"
        for d in ("data", "run-redis", "run-sentinel"):
            (node / d).mkdir(parents=True, exist_ok=True)
        return {
            **self.base_env,
            "PATH": "/usr/bin:/bin",
            "POD_NAME": f"redis-gateway-{i}",
            "NODE_HOSTS": " ".join(HOSTS),
            "REDIS_PORT": str(REDIS_PORT),
            "SENTINEL_PORT": str(SENTINEL_PORT),
            "BIND_ADDRESS": HOSTS[i],
            "LOCAL_ADDRESS": HOSTS[i],
            "DATA_DIR": str(node / "data"),
            "TEMPLATE_DIR": str(self.template),
            "REDIS_MAXMEMORY": "64mb",
        }

    def log(self, i: int, role: str) -> Path:
        return self.root / f"node-{i}" / f"{role}.log"

    def start(self, i: int, role: str) -> None:
        env = {**self.env(i), "RUN_DIR": str(self.root / f"node-{i}" / f"run-{role}")}
        with self.log(i, role).open("ab") as out:
            self.procs[(i, role)] = subprocess.Popen(
                ["sh", str(self.template / SCRIPT), role],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill(self, i: int, role: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the process this test started (its own PID, held by Popen) and reap it."""
        proc = self.procs.pop((i, role))
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        for i, role in list(self.procs):
            self.kill(i, role)

    def run(self, i: int, command: str, timeout: float = 10) -> int:
        """``ready`` or ``prestop``, as the kubelet would run it in pod ``i``."""
        env = {**self.env(i), "RUN_DIR": str(self.root / f"node-{i}" / "run-redis")}
        result = subprocess.run(
            ["sh", str(self.template / SCRIPT), command],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return result.returncode

    def redis(self, i: int) -> redis.Redis:
        return redis.Redis(
            HOSTS[i],
            REDIS_PORT,
            username="admin",
            password=self.password,
            socket_timeout=2,
            decode_responses=True,
        )

    def role(self, i: int) -> str | None:
        try:
            with self.redis(i) as r:
                return str(r.info("replication")["role"])
        except redis.RedisError:
            return None

    def sentinel_master(self, i: int) -> str | None:
        try:
            with redis.Redis(
                HOSTS[i],
                SENTINEL_PORT,
                username="admin",
                password=self.password,
                socket_timeout=2,
                decode_responses=True,
            ) as s:
                addr = s.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name)
        except redis.RedisError:
            return None
        return str(addr[0]) if addr else None

    def sentinel_info(self, i: int) -> dict[str, str]:
        with redis.Redis(
            HOSTS[i],
            SENTINEL_PORT,
            username="admin",
            password=self.password,
            socket_timeout=2,
            decode_responses=True,
        ) as s:
            raw = s.execute_command("SENTINEL", "master", self.master_name)
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return dict(zip(raw[::2], raw[1::2], strict=True))

    def agreed_master(self) -> str | None:
        """The master all three sentinels name, when they agree and see the full group."""
        named = {self.sentinel_master(i) for i in range(3)}
        if len(named) != 1 or None in named:
            return None
        infos = [self.sentinel_info(i) for i in range(3)]
        if any(info["num-slaves"] != "2" or info["num-other-sentinels"] != "2" for info in infos):
            return None
        return named.pop()

    def masters(self) -> list[int]:
        return [i for i in range(3) if self.role(i) == "master"]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    for binary in ("redis-server", "redis-sentinel", "redis-cli", "timeout"):
        assert shutil.which(binary), f"{binary} is missing (`make install` installs Debian's redis packages)"
    g = Group(tmp_path_factory.mktemp("redis-gateway"))
    try:
        # OrderedReady: each pod starts once the previous one is ready
        for i in range(3):
            g.start(i, "redis")
            g.start(i, "sentinel")
            wait_until(
                lambda i=i: g.run(i, "ready") == 0,  # type: ignore[misc]
                timeout=60,
                interval=0.2,
                what=f"pod {i} ready",
            )
        wait_until(lambda: g.agreed_master() is not None, timeout=60, interval=0.2, what="sentinels agreeing")
        yield g
    finally:
        g.stop_all()


def test_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    script = render("production").config_file("redis-gateway-config", SCRIPT)
    result = subprocess.run(
        [str(shellcheck), "--shell=sh", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.stack
def test_fresh_group_bootstraps_pod_0_with_the_seeds_sentinel_settings(group: Group) -> None:
    assert group.agreed_master() == HOSTS[0]
    assert [group.role(i) for i in range(3)] == ["master", "slave", "slave"]
    for i in range(3):
        info = group.sentinel_info(i)
        assert info["quorum"] == "2"
        assert info["down-after-milliseconds"] == "5000"
        assert info["failover-timeout"] == "10000"
        assert info["parallel-syncs"] == "1"


@pytest.mark.stack
def test_restarted_master_waits_for_the_failover_and_rejoins_as_replica(group: Group) -> None:
    old = HOSTS.index(group.agreed_master() or "")
    with group.redis(old) as r:
        r.set("k8s-test:marker", "kept")
        assert r.wait(2, 2000) == 2
    group.kill(old, "redis", signal.SIGKILL)
    # Restarted at once: the sentinels still name it master, a naive start would make it master again.
    group.start(old, "redis")

    def failed_over() -> bool:
        master = group.agreed_master()
        return master is not None and master != HOSTS[old]

    wait_until(failed_over, timeout=60, interval=0.2, what="a failover to another pod")
    wait_until(
        lambda: group.run(old, "ready") == 0, timeout=60, interval=0.2, what="the old master ready again"
    )
    assert group.role(old) == "slave"
    assert group.masters() == [HOSTS.index(group.agreed_master() or "")]
    assert "still name this pod as master" in group.log(old, "redis").read_text()
    with group.redis(old) as r:
        assert r.get("k8s-test:marker") == "kept"


@pytest.mark.stack
def test_prestop_hands_mastership_to_a_replica(group: Group) -> None:
    current = HOSTS.index(group.agreed_master() or "")
    # every replica linked, so the sentinels have a replica to promote
    wait_until(lambda: all(group.run(i, "ready") == 0 for i in range(3)), timeout=60, what="all pods ready")
    assert group.run(current, "prestop", timeout=40) == 0
    assert group.role(current) == "slave"
    wait_until(
        lambda: group.agreed_master() not in (None, HOSTS[current]),
        timeout=30,
        what="sentinels naming the new master",
    )
    assert len(group.masters()) == 1


@pytest.mark.stack
def test_acl_users_on_the_group_allow_only_their_commands(group: Group) -> None:
    """The rendered ACL users, on the running group: the default user is off, the gateway runs its
    commands on its keys only, the exporter only reads, replication runs on its own user."""
    env = group.base_env
    master = HOSTS.index(group.agreed_master() or "")
    with (
        pytest.raises(redis.AuthenticationError),
        redis.Redis(HOSTS[master], REDIS_PORT, socket_timeout=2) as r,
    ):
        r.ping()
    gw_password = env["GATEWAY_PASSWORD"]
    with redis.Redis(
        HOSTS[master], REDIS_PORT, username="gateway", password=gw_password, socket_timeout=2
    ) as gw:
        sha = gw.script_load("return redis.call('SET', 'gw:acl-probe', '1')")
        assert gw.evalsha(sha, 0) == b"OK"
        for refused in ["FLUSHALL", "CONFIG GET maxmemory", "KEYS *", "GET other:key", "REPLICAOF NO ONE"]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                gw.execute_command(*refused.split())
        with pytest.raises(redis.ResponseError, match="can't access"):
            gw.evalsha(gw.script_load("return redis.call('SET', 'other:key', '1')"), 0)
    with redis.Redis(
        HOSTS[master], REDIS_PORT, username="exporter", password=env["EXPORTER_PASSWORD"], socket_timeout=2
    ) as exporter:
        assert "role" in exporter.info("replication")
        with pytest.raises(redis.exceptions.NoPermissionError):
            exporter.set("gw:x", "1")
    with redis.Redis(
        HOSTS[master], SENTINEL_PORT, username="gateway", password=env["GATEWAY_PASSWORD"], socket_timeout=2
    ) as sentinel:
        assert sentinel.execute_command("SENTINEL", "get-master-addr-by-name", group.master_name)
        for refused in [
            f"SENTINEL FAILOVER {group.master_name}",
            f"SENTINEL SET {group.master_name} quorum 1",
        ]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                sentinel.execute_command(*refused.split())

    # The gateway's own client path: redis-py's Sentinel with user gateway on both sides.
    sentinel_client = Sentinel(  # type: ignore[no-untyped-call]
        [(h, SENTINEL_PORT) for h in HOSTS],
        sentinel_kwargs={"username": "gateway", "password": gw_password, "socket_timeout": 2},
        username="gateway",
        password=gw_password,
        socket_timeout=2,
    )
    discovered = sentinel_client.discover_master(group.master_name)  # type: ignore[no-untyped-call]
    assert discovered == (HOSTS[master], REDIS_PORT)
    assert len(sentinel_client.discover_slaves(group.master_name)) == 2  # type: ignore[no-untyped-call]
    with sentinel_client.master_for(group.master_name) as via_sentinel:  # type: ignore[no-untyped-call]
        assert via_sentinel.set("gw:via-sentinel", "1")
    with (
        redis.Redis(HOSTS[master], SENTINEL_PORT, username="gateway", password=gw_password) as s,
        s.pubsub() as pubsub,
    ):
        pubsub.subscribe("+switch-master")  # what the gateway follows failovers with
        assert pubsub.get_message(timeout=2) is not None

    def replicas_online() -> bool:  # right after the previous test's failover they may still be syncing
        with group.redis(master) as admin:
            replicas = [v for k, v in admin.info("replication").items() if k.startswith("slave")]
        return len(replicas) == 2 and all(r["state"] == "online" for r in replicas)

    wait_until(replicas_online, timeout=60, interval=0.2, what="both replicas online with user replication")


def test_the_acl_command_lists_match_the_local_stack() -> None:
    """One list per client: the local stack's ACL users run the same commands as the manifests'."""
    script = render("dev").config_file("redis-gateway-config", SCRIPT).replace("\\\n", "")
    found = dict(re.findall(r'^([A-Z_]+_COMMANDS)="([^"]*)"', script, flags=re.MULTILINE))
    assert found["GATEWAY_COMMANDS"] == rs.GATEWAY_COMMANDS
