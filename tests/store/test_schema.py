"""store/schema.py's "open" is exactly the predicate of the unique index over open requests (invariant 2),
so every ``ON CONFLICT (fingerprint) WHERE <open>`` and every count of open requests means that index."""

from __future__ import annotations

import asyncpg

from kubernaut.store.schema import OPEN, OPEN_PHASES, REQUESTS, open_request
from kubernaut_tools.localstack import LocalStack

_PREDICATE = "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = $1::regclass"


def test_open_request_qualifies_every_column() -> None:
    assert open_request("r") == "r.resolved_at IS NULL AND r.phase IN ('pending', 'processing')"
    assert OPEN == open_request() == "resolved_at IS NULL AND phase IN ('pending', 'processing')"
    assert OPEN_PHASES == ("pending", "processing")


async def test_open_is_the_unique_index_predicate(stack: LocalStack) -> None:
    conn = await asyncpg.connect(stack.settings().postgres.dsn.get_secret_value())
    try:
        async with conn.transaction():
            index = await conn.fetchval(_PREDICATE, "remediation_requests_one_open")
            await conn.execute(f"CREATE TEMP TABLE probe (LIKE {REQUESTS})")
            await conn.execute(f"CREATE UNIQUE INDEX probe_open ON probe (fingerprint) WHERE {OPEN}")
            ours = await conn.fetchval(_PREDICATE, "probe_open")
            # PostgreSQL infers the index from the shared spelling (no "no unique constraint" error).
            await conn.execute(
                f"EXPLAIN INSERT INTO {REQUESTS} AS r (fingerprint) VALUES ('x')"
                f" ON CONFLICT (fingerprint) WHERE {open_request('r')} DO NOTHING"
            )
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    assert index == ours, (index, ours)


class _Rollback(Exception):
    pass
