"""The bundled PostgreSQL's init script (ConfigMap postgres-init), run as the postgres image runs it on a
fresh cluster of Debian's PostgreSQL: it creates the roles the services' DSNs name, the owner can then
migrate, and each service role ends up with its grants only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from kubernaut.store import roles
from kubernaut.store.migrate import migrate_dsn
from kubernaut_tools.localstack import postgres
from kubernaut_tools.localstack.processes import spawn, stop, wait_until
from tests.conftest import TEST_PORT_OFFSET
from tests.deploy.manifests import container, render, resolve_env

pytestmark = pytest.mark.stack

HOST, PORT = "127.0.0.1", 15550 + TEST_PORT_OFFSET


@contextlib.contextmanager
def fresh_postgres(comp: Path, port: int) -> Iterator[str]:
    """A fresh PostgreSQL on ``port`` with the image's bootstrap done (superuser postgres); yields the
    superuser's password."""
    data = postgres.data_dir_for(comp)
    if data.parent.exists() and not data.is_relative_to(comp):
        shutil.rmtree(data.parent)
    password = comp / "pw"
    password.write_text("superuser-pw\n")
    postgres.initdb(data, password, comp / "initdb.log")
    rec = spawn(
        f"postgres-init-test-{port}",
        postgres.server_argv(data, HOST, port),
        marker=str(data),
        log=comp / "postgres.log",
        user=postgres.service_user(),
        cwd=data,
    )
    admin = postgres.dsn(HOST, port, "superuser-pw", "postgres")

    async def accepting() -> bool:
        try:
            conn = await asyncpg.connect(admin, timeout=1)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    try:
        wait_until(lambda: asyncio.run(accepting()), timeout=60, interval=0.2, what="the test PostgreSQL")
        yield "superuser-pw"
    finally:
        stop(rec, sig=signal.SIGINT)
        if not data.is_relative_to(comp):
            shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_postgres(tmp_path_factory.mktemp("postgres-init"), PORT) as password:
        yield password


async def _create_database(superuser_password: str) -> None:
    conn = await asyncpg.connect(postgres.dsn(HOST, PORT, superuser_password, "postgres"))
    try:
        await conn.execute("CREATE DATABASE kubernaut")  # what POSTGRES_DB does before the init scripts
    finally:
        await conn.close()


async def _privileges(dsn: str) -> dict[str, bool]:
    conn = await asyncpg.connect(dsn)
    try:
        checks = {
            "gateway inserts requests": (
                "has_table_privilege('kubernaut_gateway', 'remediation_requests', 'INSERT')"
            ),
            "gateway reads outcomes": (
                "has_table_privilege('kubernaut_gateway', 'remediation_outcomes', 'SELECT')"
            ),
            "context-api records outcomes": (
                "has_table_privilege('kubernaut_context_api', 'remediation_outcomes', 'INSERT')"
            ),
            "context-api inserts requests": (
                "has_table_privilege('kubernaut_context_api', 'remediation_requests', 'INSERT')"
            ),
            "owner is superuser": "(SELECT rolsuper FROM pg_roles WHERE rolname = 'kubernaut')",
            "owner owns the database": (
                "(SELECT pg_get_userbyid(datdba) = 'kubernaut' FROM pg_database WHERE datname = 'kubernaut')"
            ),
        }
        return {name: bool(await conn.fetchval(f"SELECT {sql}")) for name, sql in checks.items()}
    finally:
        await conn.close()


def test_the_init_script_creates_the_roles_the_dsns_name(cluster: str, tmp_path: Path) -> None:
    r = render("dev")
    script = tmp_path / "init-roles.sh"
    script.write_text(r.config_file("postgres-init", "init-roles.sh"))
    env = resolve_env(r, container(r.get("StatefulSet", "postgres"), "postgres"))
    asyncio.run(_create_database(cluster))
    result = subprocess.run(
        ["sh", str(script)],
        env={
            "PATH": os.environ["PATH"],
            **{
                k: env[k]
                for k in ("POSTGRES_USER", "OWNER_PASSWORD", "GATEWAY_PASSWORD", "CONTEXT_API_PASSWORD")
            },
            "PGHOST": HOST,
            "PGPORT": str(PORT),
            "PGPASSWORD": cluster,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The owner's DSN from the Secret, pointed at this server, migrates (and grants the services).
    owner = f"postgresql://{roles.OWNER}:{env['OWNER_PASSWORD']}@{HOST}:{PORT}/kubernaut"
    asyncio.run(migrate_dsn(owner))
    assert asyncio.run(_privileges(owner)) == {
        "gateway inserts requests": True,
        "gateway reads outcomes": False,
        "context-api records outcomes": True,
        "context-api inserts requests": False,
        "owner is superuser": False,
        "owner owns the database": True,
    }


def _migrate_cli(dsn: str) -> subprocess.CompletedProcess[str]:
    """`kubernaut migrate --require-roles`, as the manifests' init container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kubernaut", "migrate", "--require-roles"],
        env={"PATH": os.environ["PATH"], "KUBERNAUT_POSTGRES__DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_waits_for_the_service_roles(tmp_path_factory: pytest.TempPathFactory) -> None:
    """CloudNativePG bootstraps the owner and the database, and creates the managed service roles only
    later: a migration before that would skip their grants for good. `--require-roles` refuses it,
    changing nothing, so the init container is retried until the roles exist."""
    with fresh_postgres(tmp_path_factory.mktemp("postgres-roles-later"), PORT + 1) as superuser:
        admin = postgres.dsn(HOST, PORT + 1, superuser, "postgres")
        owner = f"postgresql://{roles.OWNER}:owner-pw@{HOST}:{PORT + 1}/kubernaut"

        async def bootstrap() -> None:  # what the Cluster's initdb does
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f"CREATE ROLE {roles.OWNER} LOGIN PASSWORD 'owner-pw'")
                await conn.execute(f"CREATE DATABASE kubernaut OWNER {roles.OWNER}")
            finally:
                await conn.close()

        async def managed_roles() -> None:  # what the operator does afterwards for spec.managed.roles
            conn = await asyncpg.connect(admin)
            try:
                for role in roles.SERVICE_ROLES:
                    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
            finally:
                await conn.close()

        async def tables() -> int:
            conn = await asyncpg.connect(owner)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
            finally:
                await conn.close()

        asyncio.run(bootstrap())
        refused = _migrate_cli(owner)
        assert refused.returncode == 1
        assert all(role in refused.stderr for role in roles.SERVICE_ROLES), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert asyncio.run(tables()) == 0, "a refused migration changed the schema"

        asyncio.run(managed_roles())
        done = _migrate_cli(owner)
        assert done.returncode == 0, done.stderr
        privileges = asyncio.run(_privileges(owner))
        assert privileges["gateway inserts requests"]
        assert privileges["context-api records outcomes"]
        assert not privileges["gateway reads outcomes"]
