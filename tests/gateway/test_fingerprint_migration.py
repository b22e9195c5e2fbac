"""Issue 13 item 6: the fingerprint is injective, and migration 030 keeps open requests deduplicating."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from kubernaut.gateway.pipeline import storm_fingerprint
from kubernaut.gateway.signal import fingerprint, identity_digest
from kubernaut.store.migrate import available, migrate, migrate_dsn
from kubernaut_tools.localstack import LocalStack
from tests.fuzzing.support import Db
from tests.gateway.helpers import PROMETHEUS, alert, in_process, isolated, webhook

COLLIDING = (("job:disk_full:ratio", "prod"), ("job", "disk_full:ratio:prod"))


def _old_fingerprint(name: str, namespace: str, kind: str, resource: str) -> str:
    return hashlib.sha256(f"{name}:{namespace}:{kind}:{resource}".encode()).hexdigest()


def _old_storm_fingerprint(storm_type: str, name: str, namespace: str, start_ms: int) -> str:
    return hashlib.sha256(f"storm:{storm_type}:{name}:{namespace}:{start_ms}".encode()).hexdigest()


def test_the_colliding_pair_gets_two_fingerprints() -> None:
    (n1, ns1), (n2, ns2) = COLLIDING
    assert _old_fingerprint(n1, ns1, "", "") == _old_fingerprint(n2, ns2, "", "")
    assert fingerprint(n1, ns1, "", "") != fingerprint(n2, ns2, "", "")
    assert fingerprint("a", "b:c", "Pod", "p") != fingerprint("a:b", "c", "Pod", "p")
    assert fingerprint("", "", "", "a") != fingerprint("a", "", "", "")
    assert storm_fingerprint("rate", "a:b", "c", 1) != storm_fingerprint("rate", "a", "b:c", 1)


@pytest.fixture
async def schema(stack: LocalStack) -> AsyncIterator[str]:
    """A schema of its own holding the tables as they were before migration 030."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(stack.postgres_dsn)
    await admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


_INSERT = """
INSERT INTO remediation_requests (fingerprint, signal_name, signal_type, source, severity, namespace,
    resource_kind, resource_name, first_seen, last_seen, is_storm, storm_type, storm_window_start)
VALUES ($1, $2, 'prometheus', 'local', 'warning', $3, $4, $5, now(), now(), $6, $7, $8)
RETURNING id
"""


@pytest.mark.stack
async def test_requests_open_before_the_upgrade_keep_deduplicating(stack: LocalStack, schema: str) -> None:
    conn = await asyncpg.connect(stack.postgres_dsn, server_settings={"search_path": schema})
    try:
        # The schema as the old release left it (what migrate() does, stopped before 030).
        await conn.execute(
            "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in available():
            if m.version < 30:
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", m.version, m.name)
        (name, namespace) = COLLIDING[0]
        old_id = await conn.fetchval(
            _INSERT, _old_fingerprint(name, namespace, "", ""), name, namespace, "", "", False, None, None
        )
        start_ms = 1_764_532_800_123
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        storm_id = await conn.fetchval(
            _INSERT,
            _old_storm_fingerprint("pattern", "Storm:x", "shop", start_ms),
            "Storm:x",
            "shop",
            "Pod",
            "p0",
            True,
            "pattern",
            start,
        )
        await conn.execute(
            "INSERT INTO storm_members VALUES ($1, $2, 'Pod/p0/x', now()), ($1, $3, '', now())",
            storm_id,
            _old_fingerprint("Storm:x", "shop", "Pod", "p0/x"),
            _old_fingerprint("Storm:x", "shop", "", ""),
        )

        assert 30 in {m.version for m in await migrate(conn)}

        rows = {
            r["id"]: r["fingerprint"]
            for r in await conn.fetch("SELECT id, fingerprint FROM remediation_requests")
        }
        assert rows == {
            old_id: fingerprint(name, namespace, "", ""),
            storm_id: storm_fingerprint("pattern", "Storm:x", "shop", start_ms),
        }
        members = {r["fingerprint"] for r in await conn.fetch("SELECT fingerprint FROM storm_members")}
        assert members == {
            fingerprint("Storm:x", "shop", "Pod", "p0/x"),
            fingerprint("Storm:x", "shop", "", ""),
        }
    finally:
        await conn.close()

    # A gateway on the upgraded schema, with empty Redis state (as after the upgrade): the alert open
    # before it is a duplicate of its request; the alert that used to collide with it gets its own.
    settings = isolated(stack)
    dsn = stack.postgres_dsn + ("&" if "?" in stack.postgres_dsn else "?") + f"search_path={schema}"
    settings = settings.model_copy(
        # As the owner: the service role's grants are on the public schema's tables, not this one's.
        update={"postgres": settings.postgres.model_copy(update={"dsn": SecretStr(dsn), "gateway_dsn": None})}
    )
    async with in_process(settings, stack.gateway_token) as gw:
        colliding = COLLIDING[1]
        resp = await gw.post(
            PROMETHEUS,
            json=webhook(
                alert(name, namespace=namespace, pod=None),
                alert(colliding[0], namespace=colliding[1], pod=None),
            ),
        )
        assert resp.status_code == 201, resp.text
        same, other = resp.json()["signals"]
        assert (same["outcome"], same["request_id"]) == ("duplicate", old_id)
        assert other["outcome"] == "created"
        assert other["request_id"] != old_id


_PARTS = st.lists(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"])), min_size=1, max_size=5
)


@pytest.mark.stack
def test_sql_and_python_digests_agree(stack: LocalStack) -> None:
    """Migration 030's SQL digest is the gateway's, on any text PostgreSQL can hold."""
    asyncio.run(migrate_dsn(stack.postgres_dsn))
    db = Db(stack.postgres_dsn)
    try:

        @settings(max_examples=200)
        @given(parts=_PARTS)
        def agree(parts: list[str]) -> None:
            assert db.val("SELECT kubernaut_identity_digest(VARIADIC $1::text[])", parts) == identity_digest(
                *parts
            )

        agree()
    finally:
        db.close()
