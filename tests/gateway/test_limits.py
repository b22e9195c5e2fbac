"""Byte limits on indexed signal values (pure): a value is over its limit by its UTF-8 length, not its
character count, and the first offending field is the one named."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubernaut.gateway.limits import MAX_NAMESPACE_BYTES, over_limit


def test_multibyte_characters_count_by_their_bytes() -> None:
    # 127 characters, 254 bytes: under the limit by characters, over it by bytes.
    value = "é" * 127
    rejection = over_limit(3, [("namespace", value, MAX_NAMESPACE_BYTES)])
    assert rejection is not None
    assert (rejection.index, rejection.field, rejection.reason) == (3, "namespace", "too_long")
    assert over_limit(3, [("namespace", "é" * 126, MAX_NAMESPACE_BYTES)]) is None


def test_the_first_field_over_its_limit_is_named() -> None:
    checks = [("alertname", "a", 4), ("namespace", "bbbbb", 4), ("severity", "ccccc", 4)]
    rejection = over_limit(0, checks)
    assert rejection is not None
    assert rejection.field == "namespace"
    assert rejection.as_json()["outcome"] == "rejected"


def test_a_lone_surrogate_is_measured_not_refused() -> None:
    # Surrogates reach here from JSON escapes; they are measured (3 bytes each), never an encode error.
    assert over_limit(0, [("alertname", "\ud800" * 2, 6)]) is None
    assert over_limit(0, [("alertname", "\ud800" * 3, 8)]) is not None


@settings(max_examples=200)
@given(st.lists(st.tuples(st.text(max_size=40), st.integers(min_value=0, max_value=120)), max_size=5))
def test_rejects_exactly_when_some_value_is_longer_in_utf8_than_its_limit(
    values: list[tuple[str, int]],
) -> None:
    checks = [(f"f{i}", value, limit) for i, (value, limit) in enumerate(values)]
    over = [f for f, v, limit in checks if len(v.encode(errors="surrogatepass")) > limit]
    rejection = over_limit(7, checks)
    if over:
        assert rejection is not None
        assert rejection.field == over[0]
    else:
        assert rejection is None
