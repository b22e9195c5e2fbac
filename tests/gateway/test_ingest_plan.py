"""The pure middle of a webhook (gateway/ingest_plan.py): the script's answers planned into phases, and
PostgreSQL's results settled into one outcome per signal and the dedup bindings. No servers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubernaut.config import GatewaySettings
from kubernaut.gateway.ingest_plan import Plan, plan, settle, storm_fingerprint
from kubernaut.gateway.ingest_protocol import Code, Entry
from kubernaut.gateway.signal import NormalizedSignal, fingerprint
from kubernaut.gateway.store import Written

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = GatewaySettings()
START_MS = 1_780_000_000_000


def sig(pod: str, firing: bool = True, name: str = "Boom") -> NormalizedSignal:
    return NormalizedSignal(
        "prometheus",
        name,
        firing,
        "critical",
        "shop",
        "Pod",
        pod,
        {},
        {},
        fingerprint(name, "shop", "Pod", pod),
    )


SEQ = 1_900_000_000_000_000  # the ingest script's seq of signal 0


def own(i: int) -> Entry:
    return Entry(Code.SINGLE, f"p:n0:{i}:0", SEQ + i)


def member(i: int, kind: str = "pattern") -> Entry:
    return Entry(Code.STORM, f"q:n0:{i}:{START_MS}:{kind}", SEQ + i)


def resolved(rid: int | None, i: int) -> Entry:
    return Entry(Code.RESOLVED, "" if rid is None else str(rid), SEQ + i)


STORM_FP = storm_fingerprint("pattern", "Boom", "shop", START_MS)


def outcomes_of(
    signals: Sequence[NormalizedSignal], planned: Plan, written: Sequence[Written]
) -> list[tuple[str, int | None]]:
    outcomes, _, _ = settle(signals, planned, written)
    return [(o.outcome, o.request_id) for o in outcomes]


def test_duplicates_are_decided_and_counted_without_postgresql() -> None:
    signals = [sig("a"), sig("b"), sig("a")]
    planned = plan(
        signals,
        [Entry(Code.DUPLICATE, "7"), Entry(Code.DUPLICATE, "9"), Entry(Code.DUPLICATE, "7")],
        SETTINGS,
        NOW,
    )
    assert planned.pending == []
    assert planned.counts == {7: 2, 9: 1}
    assert [(o.outcome, o.request_id) for o in planned.decided.values()] == [
        ("duplicate", 7),
        ("duplicate", 9),
        ("duplicate", 7),
    ]


def test_a_repeat_in_the_same_webhook_is_one_request_and_one_bind() -> None:
    a = sig("a")
    planned = plan([a, a], [own(0), own(0)], SETTINGS, NOW)
    (phase,) = planned.phases
    assert phase.singles[a.fingerprint].occurrences == 2
    written = [Written({a.fingerprint: (5, True)}, {}, {})]
    outcomes, binds, _ = settle([a, a], planned, written)
    assert [(o.outcome, o.request_id) for o in outcomes] == [("created", 5), ("duplicate", 5)]
    assert [(b.fingerprint, b.marker, b.request_id) for b in binds] == [(a.fingerprint, "p:n0:0:0", 5)]


def test_a_request_postgresql_already_had_is_a_duplicate() -> None:
    a = sig("a")
    planned = plan([a], [own(0)], SETTINGS, NOW)
    assert outcomes_of([a], planned, [Written({a.fingerprint: (5, False)}, {}, {})]) == [("duplicate", 5)]


def test_a_firing_after_a_resolution_starts_a_phase_and_only_the_open_request_is_bound() -> None:
    a, a_resolved = sig("a"), sig("a", firing=False)
    signals = [a, a_resolved, a]
    planned = plan(signals, [own(0), resolved(None, 1), own(2)], SETTINGS, NOW)
    assert len(planned.phases) == 2
    assert list(planned.phases[0].resolves) == [a.fingerprint]
    assert list(planned.phases[1].singles) == [a.fingerprint]
    written = [
        Written({a.fingerprint: (5, True)}, {}, {a.fingerprint: 5}),
        Written({a.fingerprint: (6, True)}, {}, {}),
    ]
    outcomes, binds, _ = settle(signals, planned, written)
    assert [(o.outcome, o.request_id) for o in outcomes] == [("created", 5), ("resolved", 5), ("created", 6)]
    assert [(b.marker, b.request_id) for b in binds] == [("p:n0:2:0", 6)]


def test_a_request_resolved_in_its_own_webhook_is_never_bound() -> None:
    a, a_resolved = sig("a"), sig("a", firing=False)
    planned = plan([a, a_resolved], [own(0), resolved(None, 1)], SETTINGS, NOW)
    _, binds, _ = settle(
        [a, a_resolved], planned, [Written({a.fingerprint: (5, True)}, {}, {a.fingerprint: 5})]
    )
    assert binds == []


def test_a_second_resolution_in_a_row_closes_nothing() -> None:
    r = sig("a", firing=False)
    planned = plan([r, r], [resolved(4, 0), resolved(None, 1)], SETTINGS, NOW)
    assert outcomes_of([r, r], planned, [Written({}, {}, {r.fingerprint: 4})]) == [
        ("resolved", 4),
        ("resolved", None),
    ]


def test_the_first_new_member_opens_the_storm_the_others_join_it() -> None:
    b, c, d = sig("b"), sig("c"), sig("d")
    signals = [b, c, d, c]
    planned = plan(signals, [own(0), member(1), member(2), member(1)], SETTINGS, NOW)
    (phase,) = planned.phases
    storm = phase.storms[STORM_FP]
    assert storm.storm_type == "pattern"
    assert storm.window_start == datetime.fromtimestamp(START_MS / 1000, UTC)
    assert storm.lookback == timedelta(seconds=SETTINGS.storm.pattern_window_s)
    assert list(storm.members) == [c.fingerprint, d.fingerprint]
    assert storm.occurrences == 3
    written = [Written({b.fingerprint: (1, True)}, {STORM_FP: (2, True, {c.fingerprint, d.fingerprint})}, {})]
    outcomes, binds, _ = settle(signals, planned, written)
    assert [(o.outcome, o.request_id) for o in outcomes] == [
        ("created", 1),
        ("storm_opened", 2),
        ("storm_aggregated", 2),
        ("duplicate", 2),
    ]
    assert [(b.marker, b.request_id) for b in binds] == [
        ("p:n0:0:0", 1),
        (f"q:n0:1:{START_MS}:pattern", 2),
        (f"q:n0:2:{START_MS}:pattern", 2),
    ]


def test_joining_a_window_postgresql_already_had() -> None:
    c, d = sig("c"), sig("d")
    planned = plan([c, d], [member(0, "rate"), member(1, "rate")], SETTINGS, NOW)
    sfp = storm_fingerprint("rate", "Boom", "shop", START_MS)
    assert planned.phases[0].storms[sfp].lookback == timedelta(seconds=SETTINGS.storm.rate_window_s)
    written = [Written({}, {sfp: (2, False, {d.fingerprint})}, {})]  # c was a member already
    assert outcomes_of([c, d], planned, written) == [("duplicate", 2), ("storm_aggregated", 2)]


_ENTRY = st.sampled_from(["dup", "own", "storm", "resolved"])


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from("abc"), _ENTRY), max_size=12), st.data())
def test_every_signal_gets_one_outcome_and_binds_point_at_open_requests(
    steps: list[tuple[str, str]], data: st.DataObject
) -> None:
    signals = [sig(pod, firing=kind != "resolved") for pod, kind in steps]
    entries = [
        {"dup": Entry(Code.DUPLICATE, "1"), "own": own(i), "storm": member(i), "resolved": resolved(None, i)}[
            kind
        ]
        for i, (_, kind) in enumerate(steps)
    ]
    planned = plan(signals, entries, SETTINGS, NOW)
    written = []
    for k, phase in enumerate(planned.phases):
        singles = {fp: (100 + k, data.draw(st.booleans())) for fp in phase.singles}
        storms = {sfp: (200 + k, data.draw(st.booleans()), set(j.members)) for sfp, j in phase.storms.items()}
        written.append(Written(singles, storms, dict.fromkeys(phase.resolves, 300 + k)))
    outcomes, binds, _ = settle(signals, planned, written)
    assert [o.fingerprint for o in outcomes] == [s.fingerprint for s in signals]
    assert all(o.outcome for o in outcomes)
    assert sum(o.outcome == "storm_opened" for o in outcomes) <= len(planned.phases)
    # Per phase, a fingerprint is created at most once, and only the last phase of a fingerprint that
    # it does not close is bound, once.
    last = {s.fingerprint: i for i, s in enumerate(signals)}
    for b in binds:
        assert signals[last[b.fingerprint]].firing
    assert len({b.fingerprint for b in binds}) == len(binds)


def test_new_requests_and_resolutions_carry_their_place_in_redis_order() -> None:
    a = sig("a")
    a_resolved = sig("a", firing=False)
    again = Entry(Code.SINGLE, f"p:n0:2:{SEQ + 1}", SEQ + 2)  # opened after the resolution's tombstone
    planned = plan([a, a_resolved, a], [own(0), resolved(None, 1), again], SETTINGS, NOW)
    first, second = planned.phases
    assert (first.singles[a.fingerprint].period, first.singles[a.fingerprint].seq) == (0, SEQ)
    assert first.resolve_seqs == {a.fingerprint: SEQ + 1}
    assert (second.singles[a.fingerprint].period, second.singles[a.fingerprint].seq) == (SEQ + 1, SEQ + 2)


def test_a_signal_for_postgresql_without_its_seq_is_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        plan([sig("a")], [Entry(Code.SINGLE, "p:n0:0:0")], SETTINGS, NOW)


def test_members_joined_by_the_script_are_decided_and_counted_there() -> None:
    a, b = sig("a"), sig("b")
    entries = [Entry(Code.JOINED, "9"), Entry(Code.DUPLICATE, "9"), Entry(Code.JOINED, "9")]
    planned = plan([a, a, b], entries, SETTINGS, NOW)
    assert planned.pending == []
    assert planned.joined == 2
    assert [planned.decided[i].as_json()["outcome"] for i in range(3)] == [
        "storm_aggregated",
        "duplicate",
        "storm_aggregated",
    ]
    assert planned.counts == {9: 1}  # for a commit: the duplicate only, never a join
