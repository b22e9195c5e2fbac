"""Versioned schema migrations: ``migrations/NNN_name.sql`` applied in order, each in one transaction.

Concurrent starters (two gateway replicas) serialise on an advisory lock, so each version runs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import asyncpg

from kubernaut.config import PostgresSettings, ServiceName
from kubernaut.store.roles import apply_grants, missing_service_roles

_LOCK_ID = 0x6B75626E  # "kubn"


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of ``kubernaut.store.migrations``."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    folder = resources.files("kubernaut.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations, then the service roles' grants; return the migrations applied now.
    ``conn`` must own the schema (the owner role, or a superuser)."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for m in available():
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name
                )
            applied_now.append(m)
        async with conn.transaction():
            await apply_grants(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


class SchemaBehind(Exception):
    """The database lacks migrations this code needs; the message says how to apply them."""


async def check_current(conn: asyncpg.Connection) -> None:
    """For services that do not migrate: raise SchemaBehind unless every migration is applied."""
    try:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    except asyncpg.UndefinedTableError:
        done = set()
    missing = [f"{m.version:03d}_{m.name}" for m in available() if m.version not in done]
    if missing:
        raise SchemaBehind(
            f"the database schema lacks migrations {', '.join(missing)}: run `kubernaut migrate` with the"
            " schema owner's DSN (postgres.dsn)"
        )


async def prepare_schema(postgres: PostgresSettings, service: ServiceName) -> None:
    """A service's start: migrate with the owner's DSN, or check the schema with the service's own."""
    if postgres.migrate_on_start:
        await migrate_dsn(postgres.dsn.get_secret_value())
        return
    conn = await asyncpg.connect(postgres.for_service(service).dsn.get_secret_value())
    try:
        await check_current(conn)
    finally:
        await conn.close()


class RolesMissing(Exception):
    """Service roles the migration would have to grant do not exist yet; nothing was applied."""


async def migrate_dsn(dsn: str, *, require_roles: bool = False) -> list[Migration]:
    """``require_roles``: refuse (RolesMissing) before changing anything while a service role is missing,
    e.g. CloudNativePG creates its managed roles only after bootstrap, and grants to a role that does not
    exist yet are skipped."""
    conn = await asyncpg.connect(dsn)
    try:
        if require_roles and (missing := await missing_service_roles(conn)):
            raise RolesMissing(
                f"PostgreSQL roles {', '.join(missing)} do not exist yet: create them before migrating"
                " (their grants come with the migration)"
            )
        return await migrate(conn)
    finally:
        await conn.close()
