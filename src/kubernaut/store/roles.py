"""PostgreSQL roles: a schema owner that runs migrations, and one login role per service with only the
privileges that service's queries use.

``ensure_roles`` runs once per cluster with a superuser (or CREATEROLE) connection: the local stack calls it
after PostgreSQL is up, an HA stack after its cluster is up, Kubernetes from its init script.
``apply_grants`` runs after every migration, as the owner: a table missing from ``GRANTS`` is granted to
nobody, so a new table is unreachable for the services until it is listed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from kubernaut.store.schema import (
    APPLIED_COUNT_BATCHES,
    OUTCOMES,
    REFUSED_CALLS,
    REQUESTS,
    RESOLUTIONS,
    STORM_MEMBERS,
)

OWNER = "kubernaut"
GATEWAY = "kubernaut_gateway"
CONTEXT_API = "kubernaut_context_api"
SERVICE_ROLES = (GATEWAY, CONTEXT_API)

# role -> table -> privileges, from the SQL each service runs (gateway/store.py, contextapi/queries.py).
# SELECT ... FOR UPDATE needs an UPDATE privilege: the Context-API's is limited to the columns it sets.
GRANTS: dict[str, dict[str, str]] = {
    GATEWAY: {
        REQUESTS: "SELECT, INSERT, UPDATE",
        STORM_MEMBERS: "SELECT, INSERT, UPDATE, DELETE",
        APPLIED_COUNT_BATCHES: "SELECT, INSERT, DELETE",
        RESOLUTIONS: "SELECT, INSERT",
        REFUSED_CALLS: "SELECT, INSERT, DELETE",
        "schema_migrations": "SELECT",
    },
    CONTEXT_API: {
        REQUESTS: "SELECT, UPDATE (phase, updated_at)",
        OUTCOMES: "SELECT, INSERT",
        STORM_MEMBERS: "SELECT",
        "schema_migrations": "SELECT",
    },
}
# Tables no service role may touch (the owner's alone); every table is in GRANTS or here.
NOT_GRANTED: tuple[str, ...] = ()
# Sequences behind identity/serial columns the service inserts into.
SEQUENCE_USERS = {GATEWAY: (REQUESTS,)}


async def _run(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """Run a utility statement (no bind parameters there) with ``args`` quoted by the server's format():
    %I an identifier, %L a literal. ``template`` is this module's constant text."""
    placeholders = ", ".join(f"${i + 1}::text" for i in range(len(args)))
    sql = await conn.fetchval(f"SELECT format('{template}', {placeholders})", *args)
    await conn.execute(sql)


async def ensure_roles(admin: asyncpg.Connection, passwords: Mapping[str, str], database: str) -> None:
    """Create (or update) the login roles ``passwords`` names, none of them privileged, and make the
    owner own ``database`` (created when missing) with CONNECT for the roles only. Idempotent."""
    for role, password in passwords.items():
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await _run(
            admin,
            f"{verb} ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L",
            role,
            password,
        )
    if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
        await _run(admin, "CREATE DATABASE %I OWNER %I", database, OWNER)
    else:
        await _run(admin, "ALTER DATABASE %I OWNER TO %I", database, OWNER)
    await _run(admin, "REVOKE ALL ON DATABASE %I FROM PUBLIC", database)
    for role in passwords:
        await _run(admin, "GRANT CONNECT ON DATABASE %I TO %I", database, role)


async def missing_service_roles(conn: asyncpg.Connection) -> list[str]:
    """The service roles that do not exist (yet): ``apply_grants`` would skip them."""
    present = {
        r["rolname"]
        for r in await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", SERVICE_ROLES
        )
    }
    return [role for role in SERVICE_ROLES if role not in present]


async def apply_grants(conn: asyncpg.Connection) -> list[str]:
    """Give each existing service role exactly ``GRANTS`` on the current database; return the roles
    granted. Privileges granted before and no longer listed are revoked."""
    granted = []
    for role in SERVICE_ROLES:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            continue
        await _run(conn, "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I", role)
        await _run(conn, "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I", role)
        for table, privileges in GRANTS[role].items():
            await _run(conn, f"GRANT {privileges} ON TABLE %I TO %I", table, role)
        for table in SEQUENCE_USERS.get(role, ()):
            sequences = await conn.fetch(
                "SELECT s.seq FROM (SELECT pg_get_serial_sequence($1, a.attname) AS seq"
                " FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0) s"
                " WHERE s.seq IS NOT NULL",
                table,
            )
            for row in sequences:  # pg_get_serial_sequence's name comes quoted
                await _run(conn, f"GRANT USAGE ON SEQUENCE {row['seq']} TO %I", role)
        granted.append(role)
    return granted
