"""The live services the fuzz tests hit, and a PostgreSQL connection to check what they wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubernaut.localstack import LocalStack
from tests.fuzz.support import Db, free_port
from tests.gateway.helpers import gateway_process


@pytest.fixture(scope="session")
def sync_db(stack: LocalStack) -> Iterator[Db]:
    conn = Db(stack.postgres_dsn)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def fuzz_gateway(stack: LocalStack) -> Iterator[str]:
    """A gateway process of the stack's configuration with rate limiting off (the fuzzer is one
    source sending as fast as it can; the limit has tests of its own)."""
    with gateway_process(
        stack, "gateway-fuzz", free_port(stack.topology.host), rate_limit__mode="off"
    ) as url:
        yield url


@pytest.fixture(scope="session")
def context_api(stack: LocalStack) -> str:
    stack.start_service("context-api", timeout=60)
    return stack.url("context-api")
