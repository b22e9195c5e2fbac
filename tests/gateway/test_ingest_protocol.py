"""The ingest script's protocol (gateway/ingest_protocol.py) against the layout ingest.lua reads."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources

import pytest

from kubernaut.config import GatewaySettings
from kubernaut.gateway.ingest_protocol import (
    Code,
    Entry,
    Limit,
    MemberRecord,
    StormWindow,
    count_batch,
    decode,
    encode,
    pending_period,
    settings_args,
    storm_window,
)
from kubernaut.gateway.signal import NormalizedSignal

LUA = (resources.files("kubernaut.gateway") / "scripts" / "ingest.lua").read_text()


def _signal(pod: str, firing: bool, starts_at: datetime | None = None) -> NormalizedSignal:
    return NormalizedSignal(
        "prometheus", "Boom", firing, "warning", "shop", "Pod", pod, {}, {}, f"fp-{pod}", starts_at
    )


def test_the_argv_layout_is_the_one_the_script_reads() -> None:
    settings = settings_args(GatewaySettings())
    started = datetime(2026, 12, 2, 9, 0, 1, 500_000, tzinfo=UTC)
    signals = [_signal("a", True, started), _signal("b", False, started), _signal("c", True)]
    args = encode("gw:", "n0", "src", settings, signals)
    base, fields = (int(x) for x in re.findall(r"local BASE, FIELDS = (\d+), (\d+)", LUA)[0])
    assert args[:3] == ["gw:", "n0", "src"]
    assert args[3 : base - 2] == settings
    assert args[base - 2] == 1  # ARGV[base - 1]: duplicates counted by the script
    assert args[base - 1] == 3  # ARGV[base] in Lua (1-based): the number of signals
    # A firing alert's start in ms (for a member the script joins to its storm); none for a resolution.
    assert args[base:] == [
        *("f", "fp-a", "Boom", "shop", "Pod/a", round(started.timestamp() * 1000)),
        *("r", "fp-b", "Boom", "shop", "Pod/b", 0),
        *("f", "fp-c", "Boom", "shop", "Pod/c", 0),
    ]
    assert len(args) == base + 3 * fields


def test_duplicates_can_be_left_to_postgresql() -> None:
    settings = settings_args(GatewaySettings())
    args = encode("gw:", "n0", "src", settings, [_signal("a", True)], count_duplicates=False)
    assert args[len(settings) + 3 : len(settings) + 5] == [0, 1]
    read = re.search(r"local count_here = ARGV\[(\d+)\] == '1'", LUA)
    assert read is not None
    assert int(read[1]) == len(settings) + 4


def test_settings_are_whole_milliseconds_and_microseconds() -> None:
    mode, interval_us, *_, rate_window_ms, _pattern, pattern_window_ms, inactivity_ms, max_ms = settings_args(
        GatewaySettings()
    )
    assert mode in (0, 1, 2)
    assert interval_us > 0
    assert (rate_window_ms, pattern_window_ms, inactivity_ms, max_ms) == (60_000, 120_000, 60_000, 300_000)


def test_encode_refuses_a_wrong_settings_list() -> None:
    with pytest.raises(ValueError, match="settings"):
        encode("gw:", "n0", "src", [1, 2], [])


def test_decode_reads_each_signal_entry() -> None:
    reply = decode([2, 15, 0, b"7", 1, b"p:n0:1:500", 2, b"q:n0:2:1000:rate", 3, b"", 900], 4)
    assert reply.limit is Limit.SHADOW
    assert reply.retry_after_ms == 15
    assert reply.entries == [
        Entry(Code.DUPLICATE, "7", 900),
        Entry(Code.SINGLE, "p:n0:1:500", 901),
        Entry(Code.STORM, "q:n0:2:1000:rate", 902),
        Entry(Code.RESOLVED, "", 903),
    ]
    assert reply.entries[0].request_id == 7
    assert reply.entries[3].request_id is None
    assert reply.entries[1].period == 500
    with pytest.raises(ValueError, match="marker"):
        _ = reply.entries[1].request_id
    with pytest.raises(ValueError, match="period"):
        _ = reply.entries[2].period


def test_a_reply_of_duplicates_only_has_no_seq_and_one_for_postgresql_must() -> None:
    assert decode([0, 0, 0, b"7", 0, b"8"], 2).entries == [
        Entry(Code.DUPLICATE, "7"),
        Entry(Code.DUPLICATE, "8"),
    ]
    with pytest.raises(ValueError, match="seq"):
        decode([0, 0, 0, b"7", 1, b"p:n0:1:0"], 2)


def test_an_own_marker_names_its_period() -> None:
    assert pending_period("p:ab12:3:1780000000000123") == 1_780_000_000_000_123
    assert pending_period("p:ab12:3") == 0  # stored by a release before periods
    for bad in ("p:ab12", "q:ab12:3:1000", "q:ab12:3:1000:rate"):
        with pytest.raises(ValueError, match="marker"):
            pending_period(bad)


def test_a_limited_call_has_no_entries_and_a_short_reply_is_an_error() -> None:
    assert decode([1, 250], 3).entries == []
    assert decode([1, 250], 3).limit is Limit.ENFORCED
    with pytest.raises(ValueError, match="fields"):
        decode([0, 0, 0, b"7"], 2)


def test_a_storm_marker_names_its_window() -> None:
    assert storm_window("q:ab12:3:1780000000000:pattern") == StormWindow(1_780_000_000_000, "pattern")
    for bad in ("p:ab12:3", "q:ab12:3:1000", "x:ab12:3:1000:rate"):
        with pytest.raises(ValueError, match="marker"):
            storm_window(bad)


def test_decode_reads_joins_and_the_batches_a_resolution_waits_for() -> None:
    decided = decode([0, 0, 4, b"12", 0, b"12"], 2)  # all decided by the script: no seq
    assert decided.entries == [Entry(Code.JOINED, "12"), Entry(Code.DUPLICATE, "12")]
    assert decided.entries[0].request_id == 12
    assert decided.wait_for_batches == frozenset()
    waiting = decode([0, 0, 3, b"12", 900, b"b1,b2,b1"], 1)
    assert waiting.entries == [Entry(Code.RESOLVED, "12", 900)]
    assert waiting.wait_for_batches == {"b1", "b2"}
    with pytest.raises(ValueError, match="seq"):
        decode([0, 0, 2, b"q:n0:0:1000:rate"], 1)


def test_a_count_batch_carries_counts_joined_members_and_voided_calls() -> None:
    resource = "Pod/café 1"  # a label value may hold spaces and more than one byte per character
    joined = (
        f"1700000000123456 12 1699999999000 fp-a {len(resource.encode())} {resource} 12 0 fp-b 0 ".encode()
    )
    batch = count_batch([b"12", b"3", b"_joins", b"2", b"j:n1", joined, b"u:n2", b"12,13"])
    assert batch.counts == {12: 3}
    assert batch.members == [
        MemberRecord(12, "fp-a", "n1", 1699999999000, 1700000000123456, resource),
        MemberRecord(12, "fp-b", "n1", 0, 1700000000123456, ""),
    ]
    assert batch.voided == {"n2": [12, 13]}
