"""Single-flight: concurrent requests for one key share one load."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Collapses concurrent loads of one key into a single load whose answer they all share."""

    def __init__(self, on_collapse: Callable[[], None] = lambda: None) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}
        self._on_collapse = on_collapse

    async def do(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        task = self._inflight.get(key)
        if task is None:
            # A task of its own: one caller giving up (client gone) does not cancel the others' load.
            task = asyncio.ensure_future(load())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        else:
            self._on_collapse()
        return await asyncio.shield(task)
