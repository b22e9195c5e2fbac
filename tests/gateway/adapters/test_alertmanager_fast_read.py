"""The fast read of an Alertmanager webhook (msgspec) against its definition, the pydantic models: for
any body the fast read takes, the models read the same envelope and the same alerts, value for value
(times as the same instant with the same offset); every other body goes to the models (pure functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubernaut.gateway.adapters.alertmanager import _read_fast, _read_validated
from kubernaut.problems import Problem
from tests.fuzzing.strategies import bodies, dumps, json_values, webhooks

# Times as senders write them: Alertmanager's nanoseconds, offsets, the zero time, and what is not a time.
_FRACTIONS = st.sampled_from(("", ".1", ".123456", ".1234565", ".9999995", ".123456789", ".999999999999"))
_ZONES = st.sampled_from(("Z", "z", "+00:00", "-00:00", "+05:30", "+0530", "", "+25:00"))
times = st.one_of(
    st.builds(
        lambda d, f, z: d.strftime("%Y-%m-%dT%H:%M:%S") + f + z,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        _FRACTIONS,
        _ZONES,
    ),
    st.sampled_from(("0001-01-01T00:00:00Z", "2026-01-01", "2026-01-01 00:00:00Z", "2026-02-30T00:00:00Z")),
    st.sampled_from(("2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z", "20260101T000000Z", "-1", "")),
    json_values,
)


@st.composite
def timed(draw: st.DrawFn) -> dict[str, Any]:
    hook = draw(webhooks("m"))
    for alert in hook["alerts"]:
        for field in ("startsAt", "endsAt"):
            if draw(st.booleans()):
                alert[field] = draw(times)
    if draw(st.booleans()):
        hook.update(receiver=draw(json_values), groupKey=draw(json_values), truncatedAlerts=draw(json_values))
    return hook


def _comparable(value: object) -> object:
    """Times by instant and offset (pydantic and msgspec name UTC with different tzinfo classes)."""
    if isinstance(value, datetime):
        return (value, value.utcoffset())
    if isinstance(value, tuple | list):
        return [_comparable(v) for v in value]
    return value


@settings(max_examples=400)
@given(st.one_of(bodies(timed()), timed().map(dumps)))
@example(b'{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00.9999999Z"}]}')
@example(b'{"alerts":[{"status":"firing","labels":{"a":"\\ud800"}}]}')
@example(b'{"alerts":[{"status":"firing","labels":{"a":"1","a":"2"}}],"zz":"\xff"}')
@example(b'{"alerts":[{"status":"firing","labels":{}}],"truncatedAlerts":5.0}')
def test_what_the_fast_read_takes_the_models_read_alike(body: bytes) -> None:
    fast = _read_fast(body)
    if fast is None:
        return  # the models judge it, as they always did
    try:
        validated = _read_validated(body)
    except Problem as refused:  # pragma: no cover - the failure this test exists to find
        raise AssertionError(f"the fast read took a body the models refuse: {refused.detail}") from None
    assert _comparable(fast) == _comparable(validated)


def test_the_common_webhook_takes_the_fast_read() -> None:
    body = dumps(
        {
            "version": "4",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "A", "pod": "p"},
                    "startsAt": "2026-01-01T00:00:00.123456789Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://x",
                }
            ],
            "receiver": "r",
            "groupKey": "{}",
        }
    )
    assert _read_fast(body) is not None
