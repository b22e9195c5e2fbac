"""L2: the in-process tier, bounded by entries, bytes and age, with tag invalidation.

cachetools' TTLCache gives LRU order, the TTL and the entry bound; this class adds the byte bound and a
tag index, both kept exact through TTLCache's two removal hooks (``popitem`` for evictions, ``expire`` for
ageing out). The ``generation`` counter lets a loader that started before an invalidation know it must not
store what it read.

An invalidated entry is not served, but kept (until its TTL, an eviction or a new answer) as the last known
answer, for when PostgreSQL cannot give a fresh one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache


@dataclass(slots=True)
class _Entry:
    body: bytes
    tags: tuple[str, ...]
    generation: int  # the cache's generation when stored
    invalidated: bool = False


class _Store(TTLCache[str, _Entry]):
    def __init__(
        self, maxsize: int, ttl: float, timer: Callable[[], float], forget: Callable[[str, _Entry], None]
    ) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, timer=timer)
        self._forget = forget

    def popitem(self) -> tuple[str, _Entry]:
        key, entry = super().popitem()
        self._forget(key, entry)
        return key, entry

    def expire(self, time: Any = None) -> list[tuple[str, _Entry]]:
        expired = list(super().expire(time))
        for key, entry in expired:
            self._forget(key, entry)
        return expired


class LocalCache:
    """L2: this replica's in-process cache, bounded in entries and bytes, with a TTL and a tag index."""

    def __init__(
        self, max_entries: int, max_bytes: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self._store = _Store(max_entries, ttl_s, timer, self._forget)
        self._tags: dict[str, dict[str, _Entry]] = {}  # tag -> its entries by key
        self._bytes = 0
        self.generation = 0
        self._valid_from = 0  # entries stored at an earlier generation are invalidated (invalidate_all)

    def __len__(self) -> int:
        return len(self._store)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> bytes | None:
        entry = self._store.get(key)
        if entry is None or entry.invalidated or entry.generation < self._valid_from:
            return None
        return entry.body

    def last_known(self, key: str) -> bytes | None:
        """The entry's body even if invalidated: the answer to give when no fresh one can be had."""
        entry = self._store.get(key)
        return None if entry is None else entry.body

    def put(self, key: str, body: bytes, tags: Iterable[str], generation: int) -> bool:
        """Store unless an invalidation happened since ``generation`` was read or it can never fit."""
        size = len(body)
        if generation != self.generation or size > self.max_bytes:
            return False
        self._remove(key)
        entry = _Entry(body, tuple(tags), generation)
        self._store[key] = entry  # may evict (popitem) and expire entries first
        self._bytes += size
        for tag in entry.tags:
            self._tags.setdefault(tag, {})[key] = entry
        while self._bytes > self.max_bytes:
            self._store.popitem()
        return True

    def invalidate(self, tags: Iterable[str]) -> int:
        """Stop serving every entry carrying one of ``tags``; return how many were still served."""
        self.generation += 1
        invalidated = 0
        for tag in tags:
            # Through the tag index, not the store: marking an entry must not make it recently used.
            for entry in self._tags.get(tag, {}).values():
                if not entry.invalidated:
                    entry.invalidated = True
                    invalidated += entry.generation >= self._valid_from
        return invalidated

    def invalidate_all(self) -> None:
        """Stop serving every entry (kept as last known answers, like tag invalidation)."""
        self.generation += 1
        self._valid_from = self.generation

    def _remove(self, key: str) -> None:
        entry = self._store.get(key)  # None once expired: expire() will forget it
        if entry is None:
            return
        with contextlib.suppress(KeyError):  # TTLCache deletes, then raises, if it expired just now
            del self._store[key]
        self._forget(key, entry)

    def _forget(self, key: str, entry: _Entry) -> None:
        self._bytes -= len(entry.body)
        for tag in entry.tags:
            entries = self._tags.get(tag)
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del self._tags[tag]
