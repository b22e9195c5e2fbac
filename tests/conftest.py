"""Shared fixtures: the real local stack, started by the same code as `kubernaut up`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from kubernaut_tools.localstack import LocalStack, Topology

# `make test` is deterministic: every property test draws the same examples on every run (a test's own
# settings may ask otherwise, as the long fuzz runs do), and none fails on a slow machine's timing. The
# one place for these: tests name only their example budgets and health checks.
settings.register_profile("suite", derandomize=True, deadline=None, database=None)
settings.load_profile("suite")

# Fixtures shared across packages: the whole alerting path, the fuzz targets, the HA PostgreSQL stack.
pytest_plugins = ("tests.fixtures.alerting", "tests.fixtures.fuzz", "tests.fixtures.ha")

# Tests run on ports shifted away from a developer's `kubernaut up` (offset 0), so both can coexist.
TEST_PORT_OFFSET = int(os.environ.get("KUBERNAUT_TEST_PORT_OFFSET", "1000"))


# The fixtures that start real servers; a test using any of them, directly or through another fixture,
# is a `stack` test, so `pytest -m "not stack"` starts none.
SERVER_FIXTURES = frozenset({"stack", "ha_stack"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the level of each test from the fixtures it uses, then order the failure drills last:
    they restart PostgreSQL and Redis, so they run after everything that holds connections."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.stack)
        if "ha_stack" in fixtures:
            item.add_marker(pytest.mark.ha)
    items.sort(key=lambda item: item.get_closest_marker("ha") is not None)


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


@pytest.fixture
def gateway_url(stack: LocalStack) -> str:
    """The gateway process as `kubernaut up` runs it (the stack's config: auth on, Sentinel), started
    unless it runs (a drill or fixture before may have stopped it); its bearer token is
    ``stack.gateway_token``. The stack's teardown stops it."""
    stack.start_service("gateway", timeout=60)
    return stack.url("gateway")
