"""Query validation names the offending field; equal questions share one cache key."""

from __future__ import annotations

import pytest

from kubernaut.contextapi.params import (
    IncidentQuery,
    OutcomeBody,
    ParamError,
    SuccessRateQuery,
    TrendQuery,
    parse_incident_id,
)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([("limit", "0")], "limit"),
        ([("limit", "1001")], "limit"),
        ([("limit", "ten")], "limit"),
        ([("offset", "-1")], "offset"),
        ([("phase", "done")], "phase"),
        ([("since", "yesterday")], "since"),
        ([("since", "2026-01-02T00:00:00Z"), ("until", "2026-01-01T00:00:00Z")], "until"),
        ([("namespace", "Not_A_Namespace")], "namespace"),
        ([("fingerprint", "abc")], "fingerprint"),
        ([("namespace", "a"), ("namespace", "b")], "namespace"),
        ([("colour", "blue")], "colour"),
    ],
)
def test_bad_values_name_their_field(items: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(ParamError) as err:
        IncidentQuery.parse(items)
    assert err.value.field == field


def test_defaults_and_canonical_key() -> None:
    q = IncidentQuery.parse([])
    assert (q.limit, q.offset) == (50, 0)
    a = IncidentQuery.parse([("namespace", "payments"), ("since", "2026-01-01T01:00:00+01:00")])
    b = IncidentQuery.parse([("since", "2026-01-01T00:00:00Z"), ("namespace", "payments"), ("limit", "50")])
    assert a.cache_key() == b.cache_key()
    assert a.tags() == ["ns:payments"]
    assert IncidentQuery.parse([("severity", "critical")]).tags() == ["all"]
    assert SuccessRateQuery.parse([]).cache_key() != IncidentQuery.parse([]).cache_key()


def test_trend_days_bounds() -> None:
    assert TrendQuery.parse([]).days == 7
    assert TrendQuery.parse([("days", "365")]).days == 365
    for bad in ("0", "366"):
        with pytest.raises(ParamError) as err:
            TrendQuery.parse([("days", bad)])
        assert err.value.field == "days"


def test_incident_id() -> None:
    assert parse_incident_id("42") == 42
    for bad in ("0", "-1", "x", "²", str(2**63)):
        with pytest.raises(ParamError):
            parse_incident_id(bad)


def test_outcome_body() -> None:
    body = OutcomeBody.parse(b'{"action": " restart_pod ", "succeeded": true}')
    assert (body.action, body.succeeded, body.detail) == ("restart_pod", True, "")
    for raw, field in [
        (b'{"action": "x", "succeeded": "yes"}', "succeeded"),
        (b'{"succeeded": true}', "action"),
        (b'{"action": "", "succeeded": true}', "action"),
        (b'{"action": "x", "succeeded": true, "extra": 1}', "extra"),
        (b"not json", "(body)"),  # the whole body, as both services name it
    ]:
        with pytest.raises(ParamError) as err:
            OutcomeBody.parse(raw)
        assert err.value.field == field
