"""The suite's levels are markers set at collection: a test reaching a server fixture is a `stack` test,
so `pytest -m "not stack"` never starts one."""

from __future__ import annotations

import pytest

from tests.conftest import SERVER_FIXTURES


def test_every_test_reaching_a_server_fixture_is_marked_stack(request: pytest.FixtureRequest) -> None:
    unmarked = [
        item.nodeid
        for item in request.session.items
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("stack") is None
    ]
    assert not unmarked


def test_the_failure_drills_run_last(request: pytest.FixtureRequest) -> None:
    drills = [item.get_closest_marker("ha") is not None for item in request.session.items]
    assert drills == sorted(drills)
