"""PostgreSQL least privilege (issue 13, item 9): the services log in with roles of their own, neither a
superuser nor the schema's owner, each with only the grants its queries use; the owner runs migrations."""

from __future__ import annotations

import asyncpg
import pytest

from kubernaut.store import roles
from kubernaut.store.migrate import SchemaBehind, check_current
from kubernaut_tools.localstack import LocalStack

ROLE_FLAGS = (
    "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
    " FROM pg_roles WHERE rolname = $1"
)


async def connect(stack: LocalStack, role: str) -> asyncpg.Connection:
    return await asyncpg.connect(stack.postgres_role_dsn(role))


async def test_the_stack_config_gives_each_service_its_own_role(stack: LocalStack) -> None:
    pg = stack.settings().postgres
    assert pg.migrate_on_start is False
    users = {
        service: (await asyncpg.connect(pg.for_service(service).dsn.get_secret_value()))
        for service in ("gateway", "context_api")
    }
    try:
        assert await users["gateway"].fetchval("SELECT current_user") == roles.GATEWAY
        assert await users["context_api"].fetchval("SELECT current_user") == roles.CONTEXT_API
    finally:
        for conn in users.values():
            await conn.close()
    owner = await asyncpg.connect(pg.dsn.get_secret_value())
    try:
        assert await owner.fetchval("SELECT current_user") == roles.OWNER
        for role in (roles.OWNER, *roles.SERVICE_ROLES):
            flags = await owner.fetchrow(ROLE_FLAGS, role)
            assert flags is not None
            assert tuple(flags) == (False,) * 5, role
        tables = await owner.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        assert {r["tableowner"] for r in tables} == {roles.OWNER}
    finally:
        await owner.close()


async def test_every_table_is_listed_for_every_service_role(stack: LocalStack) -> None:
    """A new table must be granted (or deliberately not) in store/roles.py, never by accident."""
    owner = await asyncpg.connect(stack.postgres_dsn)
    try:
        tables = {
            r["tablename"]
            for r in await owner.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await owner.close()
    listed = set().union(*(set(g) for g in roles.GRANTS.values())) | set(roles.NOT_GRANTED)
    assert tables == listed


@pytest.mark.parametrize(
    ("role", "statement"),
    [
        (roles.GATEWAY, "DELETE FROM remediation_requests WHERE false"),
        (roles.GATEWAY, "SELECT 1 FROM remediation_outcomes LIMIT 1"),
        (roles.GATEWAY, "INSERT INTO schema_migrations (version, name) VALUES (999, 'x')"),
        (roles.GATEWAY, "CREATE TABLE intruder (x int)"),
        (roles.GATEWAY, "TRUNCATE storm_members"),
        (roles.CONTEXT_API, "INSERT INTO remediation_requests (fingerprint) VALUES ('x')"),
        (roles.CONTEXT_API, "UPDATE remediation_requests SET occurrence_count = 0 WHERE false"),
        (roles.CONTEXT_API, "DELETE FROM storm_members"),
        (roles.CONTEXT_API, "DELETE FROM remediation_outcomes WHERE false"),
        (roles.CONTEXT_API, "CREATE TABLE intruder (x int)"),
        (roles.CONTEXT_API, "DROP TABLE remediation_outcomes"),
    ],
)
async def test_a_service_role_cannot_do_what_it_does_not_need(
    stack: LocalStack, role: str, statement: str
) -> None:
    conn = await connect(stack, role)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_service_role_can_do_what_its_queries_need(stack: LocalStack) -> None:
    gw, ctx = await connect(stack, roles.GATEWAY), await connect(stack, roles.CONTEXT_API)
    try:
        async with gw.transaction():
            await gw.execute(
                "UPDATE remediation_requests SET occurrence_count = occurrence_count WHERE false"
            )
            await gw.execute("INSERT INTO storm_members SELECT * FROM storm_members WHERE false")
            await check_current(gw)
        async with ctx.transaction():
            await ctx.execute("SELECT id FROM remediation_requests WHERE false FOR UPDATE")
            await ctx.execute("UPDATE remediation_requests SET phase = phase, updated_at = now() WHERE false")
            await ctx.execute(
                "INSERT INTO remediation_outcomes SELECT * FROM remediation_outcomes WHERE false"
            )
            await check_current(ctx)
    finally:
        await gw.close()
        await ctx.close()


async def test_a_service_refuses_a_schema_that_is_behind(stack: LocalStack) -> None:
    admin = await asyncpg.connect(stack.postgres_admin_dsn.rpartition("/")[0] + "/postgres")
    try:
        await admin.execute('DROP DATABASE IF EXISTS "roles_behind" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "roles_behind"')
        conn = await asyncpg.connect(stack.postgres_admin_dsn.rpartition("/")[0] + "/roles_behind")
        try:
            with pytest.raises(SchemaBehind, match="kubernaut migrate"):
                await check_current(conn)
        finally:
            await conn.close()
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "roles_behind" WITH (FORCE)')
        await admin.close()
