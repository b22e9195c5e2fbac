"""The stack's PostgreSQL: its own data directory, loopback TCP only, password authentication.

The bootstrap superuser (``postgres``) only creates roles and databases; the schema belongs to the owner
role and each service logs in with its own (see kubernaut.store.roles)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import asyncpg

from kubernaut.store import roles

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
DB_NAME = "kubernaut"
SUPERUSER = "postgres"


def pg_bin(tool: str) -> str:
    for d in PG_BIN_CANDIDATES:
        if (d / tool).exists():
            return str(d / tool)
    found = shutil.which(tool)
    if found is None:
        raise FileNotFoundError(f"{tool} not found: install Debian's postgresql package (make install)")
    return found


def service_user() -> str | None:
    """PostgreSQL refuses to run as root; use the Debian package's 'postgres' account then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise RuntimeError(
            "running as root needs the 'postgres' account (Debian's postgresql package)"
        ) from err
    return "postgres"


def data_dir_for(component_dir: Path) -> Path:
    """The data directory; when 'postgres' cannot reach the run directory, a private one in /var/tmp."""
    user = service_user()
    if user is None:
        return component_dir / "data"
    probe = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(component_dir)], check=False, capture_output=True
    )
    if probe.returncode == 0:
        return component_dir / "data"
    digest = hashlib.sha256(str(component_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp/kubernaut") / digest / "data"


def initdb(data_dir: Path, password_file: Path, log: Path) -> None:
    user = service_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    pwfile = password_file
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(data_dir, 0o700)
        pwfile = data_dir.parent / ".pwfile"
        shutil.copyfile(password_file, pwfile)
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    try:
        with log.open("ab") as out:
            subprocess.run(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )
    finally:
        if pwfile != password_file:
            pwfile.unlink(missing_ok=True)


def server_argv(data_dir: Path, host: str, port: int) -> list[str]:
    return [
        pg_bin("postgres"),
        "-D",
        str(data_dir),
        "-c",
        f"port={port}",
        "-c",
        f"listen_addresses={host}",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
        "-c",
        "log_min_messages=warning",
    ]


def dsn(host: str, port: int, password: str, database: str = DB_NAME, user: str = SUPERUSER) -> str:
    """A DSN of the stack's server; the superuser's unless ``user`` names a role."""
    return f"postgresql://{user}:{password}@{host}:{port}/{database}"


async def _ensure_database(host: str, port: int, password: str, role_passwords: dict[str, str]) -> bool:
    try:
        conn = await asyncpg.connect(dsn(host, port, password, "postgres"), timeout=1)
    except asyncpg.InvalidPasswordError as err:
        raise RuntimeError(
            f"PostgreSQL refuses the stack's superuser {SUPERUSER!r} ({err}): a data directory from an"
            " older release; recreate it with `kubernaut down --purge`"
        ) from None
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        await roles.ensure_roles(conn, role_passwords, DB_NAME)  # CREATE DATABASE: no transaction
        return True
    except (asyncpg.CannotConnectNowError, asyncpg.ReadOnlySQLTransactionError):
        return False  # starting, or a node named primary that is still finishing its promotion
    finally:
        await conn.close()


def ensure_database(host: str, port: int, password: str, role_passwords: dict[str, str]) -> bool:
    """True once the server accepts connections, the roles have ``role_passwords`` and the project's
    database exists, owned by the owner role."""
    return asyncio.run(_ensure_database(host, port, password, role_passwords))


async def _has_database(host: str, port: int, password: str, user: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn(host, port, password, DB_NAME, user), timeout=1)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def has_database(host: str, port: int, password: str, user: str) -> bool:
    """True once the server lets ``user`` into the project's database (a standby: once it has replayed it)."""
    return asyncio.run(_has_database(host, port, password, user))
