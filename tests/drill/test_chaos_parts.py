"""The chaos drill's pure parts: the fault schedule is a function of seed and duration, and the checker
finds each kind of violation in a history (hypothesis over seeds; examples for the checker)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kubernaut.config import SentinelRedis
from kubernaut_tools.drill.chaos_check import Row, check
from kubernaut_tools.drill.chaos_history import Event
from kubernaut_tools.drill.chaos_schedule import KINDS, PAUSE_RANGE_S, TAIL_S, WARMUP_S, schedule


@settings(max_examples=200)
@given(seed=st.integers(min_value=0, max_value=2**32), duration=st.floats(min_value=10, max_value=3600))
def test_the_schedule_is_a_pure_function_of_seed_and_duration(seed: int, duration: float) -> None:
    plan = schedule(seed, duration)
    assert plan == schedule(seed, duration)
    assert plan == schedule(seed, int(duration)) or duration != int(duration)
    for fault in plan:
        assert fault.at_s > WARMUP_S
        assert fault.at_s + fault.hold_s <= duration - TAIL_S
        assert fault.kind in KINDS
        if fault.kind == "master-pause":
            assert PAUSE_RANGE_S[0] <= fault.hold_s <= PAUSE_RANGE_S[1]
    assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)


def test_seeds_differ_and_a_long_run_meets_every_kind() -> None:
    assert schedule(1, 600) != schedule(2, 600)
    assert {f.kind for f in schedule(1, 1800)} == set(KINDS)
    pauses = [f.hold_s for f in schedule(1, 1800) if f.kind == "master-pause"]
    assert min(pauses) < 1.0 < 5.0 < max(pauses)  # below socket_s and above Sentinel's down-after


def _event(seq: int, alerts: list[tuple[str, bool]], status: int, rid: int | None = None) -> Event:
    outcomes = [(n, "duplicate" if f else "resolved", rid) for n, f in alerts] if 200 <= status < 300 else []
    return Event(0, seq, float(seq), float(seq), alerts, status, status == 503, False, outcomes)


def test_exact_history_has_no_violation() -> None:
    events = [
        _event(0, [("A", True)], 201, 1),
        _event(1, [("A", True)], 202, 1),
        _event(2, [("A", True)], 503),
    ]
    found = check(events, [Row(1, "A", 2, True)])
    assert found.violations == []


def test_checker_finds_loss_drift_and_acks_on_closed_requests() -> None:
    events = [
        _event(0, [("A", True)], 201, 1),
        _event(1, [("A", True)], 202, 1),
        _event(2, [("A", True)], 503),  # refused: must count nothing
        _event(3, [("B", True)], 201, 7),  # request 7 does not exist: lost
        _event(4, [("C", True)], 201, 3),
        _event(5, [("C", False)], 202, 3),
        _event(6, [("C", True)], 202, 3),  # after the resolution, onto the closed request
    ]
    found = check(events, [Row(1, "A", 3, True), Row(3, "C", 2, False)])
    kinds = sorted(v["kind"] for v in found.violations)
    assert kinds == [
        "ack_on_closed_request",
        "count_drift",
        "count_drift",
        "lost",
        "no_open_request_while_firing",  # B: its only request is missing
        "no_open_request_while_firing",  # C: fires again, its request is closed
    ]
    assert found.lost == 1
    assert found.acks_on_closed_requests == 1
    assert found.count_drift_max_abs == 1


def test_unanswered_webhooks_may_or_may_not_count() -> None:
    unanswered = Event(0, 2, 2.0, 2.0, [("A", True)], 0, False, True)
    events = [_event(0, [("A", True)], 201, 1), unanswered]
    assert check(events, [Row(1, "A", 1, True)]).violations == []
    assert check(events, [Row(1, "A", 2, True)]).violations == []
    assert check(events, [Row(1, "A", 3, True)]).count_drift_sum == 1


def test_the_chaos_proxy_address_map_is_validated_and_applied() -> None:
    section = SentinelRedis(
        sentinels=["127.0.0.1:26379"], master_name="m", address_map={"127.0.0.1:16379": "127.0.0.1:16479"}
    )
    assert section.mapped_addresses() == {("127.0.0.1", 16379): ("127.0.0.1", 16479)}
    with pytest.raises(ValidationError, match="is not host:port"):
        SentinelRedis(sentinels=["127.0.0.1:26379"], master_name="m", address_map={"127.0.0.1": "x:1"})
