"""Which time an alert's first_seen / resolved_at take (issue 12 item 6): pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubernaut.gateway.signal import AlertTimes

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW, AGE = 60, 7 * 24 * 3600


def alert_time(claimed: datetime | None, received: datetime, skew: int, age: int) -> datetime:
    return AlertTimes(received, skew, age).believe(claimed)


def test_a_recent_alert_time_is_taken() -> None:
    ten_minutes_ago = NOW - timedelta(minutes=10)
    assert alert_time(ten_minutes_ago, NOW, SKEW, AGE) == ten_minutes_ago


def test_missing_or_naive_times_give_the_receipt_time() -> None:
    assert alert_time(None, NOW, SKEW, AGE) == NOW
    assert alert_time(datetime(2026, 6, 1, 11, 0), NOW, SKEW, AGE) == NOW


def test_future_times_are_taken_within_the_skew_only() -> None:
    assert alert_time(NOW + timedelta(seconds=SKEW), NOW, SKEW, AGE) == NOW + timedelta(seconds=SKEW)
    assert alert_time(NOW + timedelta(seconds=SKEW + 1), NOW, SKEW, AGE) == NOW


def test_absurdly_old_times_give_the_receipt_time() -> None:
    assert alert_time(NOW - timedelta(seconds=AGE), NOW, SKEW, AGE) == NOW - timedelta(seconds=AGE)
    assert alert_time(NOW - timedelta(seconds=AGE + 1), NOW, SKEW, AGE) == NOW
    zero = datetime(1, 1, 1, tzinfo=UTC)  # Alertmanager's endsAt of a firing alert
    assert alert_time(zero, NOW, SKEW, AGE) == NOW


def test_an_age_limit_beyond_the_calendar_takes_every_past_time() -> None:
    zero = datetime(1, 1, 1, tzinfo=UTC)
    assert alert_time(zero, NOW, SKEW, 10**12) == zero
    assert alert_time(NOW + timedelta(days=1), NOW, 10**12, AGE) == NOW + timedelta(days=1)
