"""The HA PostgreSQL stack (``kubernaut up --postgres-ha``), started once per session for tests/ha."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubernaut_tools.localstack import LocalStack, Topology
from tests.conftest import TEST_PORT_OFFSET

# Beside the plain test stack: a whole stack of its own (Redis group included) 300 ports further on.
HA_PORT_OFFSET = TEST_PORT_OFFSET + 300


@pytest.fixture(scope="session")
def ha_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """etcd + two Patroni nodes, the gateway's Redis group, the Context-API's Redis and both services."""
    s = LocalStack(tmp_path_factory.mktemp("ha-stack"), Topology(offset=HA_PORT_OFFSET))
    started = False
    try:
        s.up(postgres_ha=True, timeout=120)
        started = True
        yield s
    finally:
        # A start-up failure is not counted in testsfailed yet: keep its logs too.
        if request.session.testsfailed or not started:
            s.down()
            print(f"\nthe HA test stack's logs are kept in {s.run.logs}")
        else:
            s.destroy()
