"""L2 keeps both bounds (entries and bytes), its TTL and an exact tag index."""

from __future__ import annotations

from kubernaut.contextapi.cache.l2 import LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entry_bound_evicts_least_recently_used() -> None:
    c = LocalCache(max_entries=3, max_bytes=10_000, ttl_s=60)
    for k in "abc":
        assert c.put(k, b"x", [f"t:{k}"], c.generation)
    assert c.get("a") == b"x"  # a becomes recent; b is now the oldest
    c.put("d", b"x", ["t:d"], c.generation)
    assert len(c) == 3
    assert c.get("b") is None
    assert c.get("a") == b"x"
    assert c.invalidate(["t:b"]) == 0  # its tag went with it


def test_byte_bound_evicts_until_it_fits_and_refuses_oversize() -> None:
    c = LocalCache(max_entries=100, max_bytes=1024, ttl_s=60)
    for i in range(4):
        c.put(f"k{i}", b"x" * 300, [], c.generation)
    assert c.size_bytes <= 1024
    assert len(c) == 3
    assert c.get("k0") is None
    assert not c.put("huge", b"x" * 1025, [], c.generation)
    assert c.size_bytes == 900


def test_ttl_expires_and_accounting_follows() -> None:
    clock = Clock()
    c = LocalCache(max_entries=10, max_bytes=10_000, ttl_s=30, timer=clock)
    c.put("a", b"12345", ["ns:x"], c.generation)
    clock.now = 29.9
    assert c.get("a") == b"12345"
    clock.now = 30.0
    assert c.get("a") is None
    c.put("b", b"1", [], c.generation)  # triggers the purge of expired entries
    assert c.size_bytes == 1
    assert c.invalidate(["ns:x"]) == 0


def test_invalidate_by_tag_and_generation_blocks_stale_fill() -> None:
    c = LocalCache(max_entries=10, max_bytes=10_000, ttl_s=30)
    g = c.generation
    c.put("list", b"[1]", ["all"], g)
    c.put("ns", b"[2]", ["ns:a"], g)
    c.put("other", b"[3]", ["ns:b"], g)
    assert c.invalidate(["ns:a", "all"]) == 2
    assert (c.get("list"), c.get("ns"), c.get("other")) == (None, None, b"[3]")
    assert not c.put("list", b"[old]", ["all"], g)  # loaded before the invalidation
    assert c.put("list", b"[new]", ["all"], c.generation)


def test_overwrite_keeps_bytes_exact() -> None:
    c = LocalCache(max_entries=10, max_bytes=10_000, ttl_s=30)
    c.put("a", b"x" * 10, ["t"], c.generation)
    c.put("a", b"x" * 4, ["u"], c.generation)
    assert c.size_bytes == 4
    assert c.invalidate(["t"]) == 0
    assert c.invalidate(["u"]) == 1


def test_invalidated_entries_are_kept_as_last_known_answers() -> None:
    clock = Clock()
    c = LocalCache(max_entries=10, max_bytes=10_000, ttl_s=30, timer=clock)
    c.put("list", b"[1]", ["all"], c.generation)
    c.put("ns", b"[2]", ["ns:a"], c.generation)
    assert c.invalidate(["all"]) == 1
    assert c.invalidate(["all"]) == 0  # already invalidated
    assert (c.get("list"), c.last_known("list")) == (None, b"[1]")
    c.invalidate_all()
    assert (c.get("ns"), c.last_known("ns")) == (None, b"[2]")
    assert c.invalidate(["ns:a"]) == 0  # nothing served any more
    assert c.put("ns", b"[3]", ["ns:a"], c.generation)  # a new answer replaces it and is served
    assert (c.get("ns"), c.last_known("ns")) == (b"[3]", b"[3]")
    assert c.size_bytes == 6
    clock.now = 30.0  # the TTL bounds a last known answer too
    assert c.last_known("list") is None
