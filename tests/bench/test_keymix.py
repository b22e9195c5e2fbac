"""The read benchmarks' key mix: Zipf's law, the mixture of key classes, the key file get.lua reads."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from kubernaut.contextapi.params import IncidentQuery
from kubernaut_tools.bench.keymix import (
    INCIDENTS_PATH,
    KeyClass,
    context_api_mix,
    cumulative,
    ideal_hit_rate,
    incident_paths,
    list_paths,
    mixture,
    write_key_file,
    zipf,
)


def test_zipf_ranks_fall_as_a_power_of_the_rank() -> None:
    p = zipf(1000, 1.0)
    assert sum(p) == pytest.approx(1.0)
    assert p[0] / p[1] == pytest.approx(2.0)
    assert p[0] / p[9] == pytest.approx(10.0)
    assert zipf(100, 1.5)[0] / zipf(100, 1.5)[3] == pytest.approx(8.0)
    assert zipf(5, 0.0) == pytest.approx([0.2] * 5)
    with pytest.raises(ValueError, match="at least one rank"):
        zipf(0, 1.0)


def test_mixture_gives_each_class_its_share_most_popular_first() -> None:
    mix = mixture(
        [
            KeyClass("a", 0.75, 1.0, [f"/a/{i}" for i in range(100)]),
            KeyClass("b", 0.25, 1.0, [f"/b/{i}" for i in range(10)]),
        ]
    )
    assert len(mix) == 110
    assert sum(p for path, p in mix if path.startswith("/a/")) == pytest.approx(0.75)
    assert sum(p for path, p in mix if path.startswith("/b/")) == pytest.approx(0.25)
    probabilities = [p for _, p in mix]
    assert probabilities == sorted(probabilities, reverse=True)
    assert mix[0][0] == "/a/0"  # 0.75 / H(100) beats 0.25 / H(10)


def test_mixture_refuses_bad_classes() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        mixture([KeyClass("a", 0.5, 1.0, ["/x"])])
    with pytest.raises(ValueError, match="more than once"):
        mixture([KeyClass("a", 0.5, 1.0, ["/x"]), KeyClass("b", 0.5, 1.0, ["/x"])])


def test_key_file_holds_the_cumulative_probability_ending_at_exactly_one(tmp_path: Path) -> None:
    mix = mixture([KeyClass("a", 1.0, 1.1, [f"/k/{i}" for i in range(1, 50)])])
    cum = cumulative(mix)
    assert cum == sorted(cum)
    assert cum[-1] == 1.0
    write_key_file(tmp_path / "keys", mix)
    lines = (tmp_path / "keys").read_text().splitlines()
    parsed = [(float(c), path) for c, path in (line.split("\t") for line in lines)]
    assert [path for _, path in parsed] == [path for path, _ in mix]
    assert [c for c, _ in parsed] == cum  # repr round-trips floats exactly


def test_ideal_hit_rate_is_the_mass_of_the_most_popular_keys() -> None:
    mix = mixture([KeyClass("a", 1.0, 1.0, [f"/k/{i}" for i in range(4)])])
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert ideal_hit_rate(mix, 1) == pytest.approx(1 / harmonic)
    assert ideal_hit_rate(mix, 2) == pytest.approx(1.5 / harmonic)
    assert ideal_hit_rate(mix, 10) == pytest.approx(1.0)


def test_incident_paths_are_every_id_in_an_order_fixed_by_the_seed() -> None:
    ids = range(1, 1001)
    paths = incident_paths(ids, seed=3)
    assert paths == incident_paths(reversed(ids), seed=3)
    assert paths != incident_paths(ids, seed=4)
    assert sorted(paths) == sorted(f"{INCIDENTS_PATH}/{i}" for i in ids)


def test_list_paths_are_distinct_questions_the_context_api_accepts() -> None:
    paths = list_paths(seed=3)
    assert len(paths) == 12 * 4 * 5  # namespace (or none) x severity (or none) x phase (or none)
    keys = set()
    for path in paths:
        url = urlsplit(path)
        assert url.path == INCIDENTS_PATH
        keys.add(IncidentQuery.parse(parse_qsl(url.query)).cache_key())
    assert len(keys) == len(paths), "each list path is its own cache entry"


def test_context_api_mix_sends_four_requests_in_five_by_id() -> None:
    mix = context_api_mix(range(1, 5001), seed=1)
    assert len(mix) == 5000 + 240
    by_id = sum(p for path, p in mix if "?" not in path)
    assert by_id == pytest.approx(0.8)
