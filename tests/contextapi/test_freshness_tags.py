"""Which cache tags a PostgreSQL request notification (migration 010's payloads) invalidates."""

from __future__ import annotations

import pytest

from kubernaut.contextapi.freshness import tags_for


def test_new_requests_touch_their_namespace_and_all() -> None:
    assert tags_for('{"ns":"payments"}') == ["all", "ns:payments"]


def test_a_changed_request_touches_itself_too() -> None:
    assert tags_for('{"id":42,"ns":"payments"}') == ["all", "incident:42", "ns:payments"]


def test_a_namespace_too_long_to_announce_touches_all() -> None:
    assert tags_for("{}") == ["all"]
    assert tags_for('{"id":7}') == ["all", "incident:7"]


@pytest.mark.parametrize(
    "payload", ["", "not json", "[1]", '{"id":"7","ns":"a"}', '{"id":true}', '{"ns":3}', '{"id":1.5}']
)
def test_unreadable_payloads_mean_drop_everything(payload: str) -> None:
    assert tags_for(payload) is None
