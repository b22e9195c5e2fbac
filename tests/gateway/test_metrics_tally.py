"""The tally of accepted webhooks' metrics (kubernaut.gateway.metrics.Tally): once flushed, the exposition
is exactly what updating the metrics one by one gives, bucket boundaries included."""

from __future__ import annotations

import functools

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from kubernaut.gateway.metrics import _BUCKETS, GatewayMetrics

_ON_BOUNDS = st.sampled_from([*_BUCKETS, 0.0, 3.0])
_DURATIONS = st.lists(st.one_of(_ON_BOUNDS, st.floats(0, 5, allow_nan=False)), max_size=40)


def _page(metrics: GatewayMetrics) -> bytes:
    return b"\n".join(
        line for line in generate_latest(metrics.registry).splitlines() if b"_created" not in line
    )


@given(_DURATIONS, st.lists(st.integers(1, 50), max_size=10))
def test_a_flushed_tally_is_what_direct_updates_give(durations: list[float], counts: list[int]) -> None:
    direct, tallied = GatewayMetrics(), GatewayMetrics()
    for metrics, held in ((direct, False), (tallied, True)):
        route = metrics.http_duration.labels(route="/r")
        signals = metrics.signal_children[("prometheus", "duplicate")]
        observe = functools.partial(metrics.tally.observe, route) if held else route.observe
        add = functools.partial(metrics.tally.inc, signals) if held else signals.inc
        for d in durations:
            observe(d)
        for n in counts:
            add(n)
    assert _page(tallied) != _page(direct) or not (durations or counts)  # held until flushed
    tallied.tally.flush()
    assert _page(tallied) == _page(direct)
    tallied.tally.flush()  # nothing held twice
    assert _page(tallied) == _page(direct)
