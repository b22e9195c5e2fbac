"""Shared fixtures: the real local stack, started by the same code as `kubernaut up`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kubernaut_tools.localstack import LocalStack, Topology

# Tests run on ports shifted away from a developer's `kubernaut up` (offset 0), so both can coexist.
TEST_PORT_OFFSET = int(os.environ.get("KUBERNAUT_TEST_PORT_OFFSET", "1000"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Failure drills restart PostgreSQL and Redis: run them after everything that holds connections."""
    items.sort(key=lambda item: "tests/ha/" in item.nodeid)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """PostgreSQL, the gateway's Redis HA group and the Context-API's Redis, ready; services not started.

    After a failed session the processes stop but the run directory stays, logs included."""
    s = LocalStack(tmp_path_factory.mktemp("stack"), Topology(offset=TEST_PORT_OFFSET))
    try:
        s.up(services=False, timeout=90)
        yield s
    finally:
        if request.session.testsfailed:
            s.down()
            print(f"\nthe test stack's logs are kept in {s.run.logs}")
        else:
            s.destroy()


@pytest.fixture(scope="session")
def gateway_url(stack: LocalStack) -> str:
    """The gateway process as `kubernaut up` runs it (the stack's config: auth on, Sentinel), started
    once per session; its bearer token is ``stack.gateway_token``. The stack's teardown stops it."""
    stack.start_service("gateway", timeout=60)
    return stack.url("gateway")
