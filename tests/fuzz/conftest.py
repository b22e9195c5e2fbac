"""The live services the fuzz tests hit, a PostgreSQL connection to check what they wrote, and the
example budget: bounded and derandomized in the suite; ``KUBERNAUT_FUZZ_EXAMPLES=N`` for a long,
random run (N examples per test)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import gateway_process

LONG_RUN = int(os.environ.get("KUBERNAUT_FUZZ_EXAMPLES", "0"))

fuzz = settings(
    max_examples=LONG_RUN or 60,
    derandomize=not LONG_RUN,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class Db:
    """A PostgreSQL connection for the sync hypothesis tests, on a loop of its own."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(dsn))

    def val(self, sql: str, *args: Any) -> Any:
        return self._loop.run_until_complete(self._conn.fetchval(sql, *args))

    def row(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self._loop.run_until_complete(self._conn.fetchrow(sql, *args))
        return dict(row) if row is not None else None

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


@pytest.fixture(scope="session")
def db(stack: LocalStack) -> Iterator[Db]:
    conn = Db(stack.postgres_dsn)
    try:
        yield conn
    finally:
        conn.close()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def fuzz_gateway(stack: LocalStack) -> Iterator[str]:
    """A gateway process of the stack's configuration with rate limiting off (the fuzzer is one
    source sending as fast as it can; the limit has tests of its own)."""
    with gateway_process(
        stack, "gateway-fuzz", _free_port(stack.topology.host), rate_limit__mode="off"
    ) as url:
        yield url


@pytest.fixture(scope="session")
def context_api(stack: LocalStack) -> str:
    stack.start_service("context-api", timeout=60)
    return stack.url("context-api")
