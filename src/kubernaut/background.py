"""One background worker for both services: a named task that runs a step when woken or when its wait is
over, with one set of lifecycle verbs (``start``, ``wake``, ``stop``).

A step is one unit of work (apply what is queued, probe once, hold one connection until it is lost); the
worker owns the loop, the wake-up event and the task. ``interval`` is the wait before the next step: a
number, a callable asked before every wait (a backoff, a breaker's delay), or None to wait for ``wake``
only. A wake during a step is not lost: the next wait returns at once.

A step that raises is logged with the worker's name and the loop goes on: a worker never dies silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Interval = float | Callable[[], float | None] | None


class Worker:
    """A named background loop: ``step`` after every wake-up or ``interval``, until ``stop``."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        *,
        interval: Interval = None,
        first_wait: bool = True,
    ) -> None:
        """``first_wait``: wait before the first step (False: the first step runs as soon as started)."""
        self.name = name
        self._step = step
        self._interval = interval
        self._woken = asyncio.Event()
        if not first_wait:
            self._woken.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # the loop ends at its next turn, even if a cancel was swallowed
        self._draining = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop (once: a stopped worker stays stopped)."""
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Run the step soon (at once if waiting; right after the current step if one runs)."""
        self._woken.set()

    async def stop(self, *, drain: bool = False, timeout_s: float | None = None) -> None:
        """End the loop. Without ``drain`` a running step is cancelled; with it, a running step is let
        finish and the step runs once more (what was queued is handled) before the task ends.
        ``timeout_s`` bounds the wait, after which the task is cancelled (a step stuck in a call must not
        hold a shutdown)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if drain:
            self._draining = True
            self._woken.set()
            done, _ = await asyncio.wait([task], timeout=timeout_s)
            if done:
                return
        task.cancel()
        if timeout_s is None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            await asyncio.wait([task], timeout=timeout_s)

    def _wait_s(self) -> float | None:
        return self._interval() if callable(self._interval) else self._interval

    async def _run(self) -> None:
        while not self._stopping:
            wait_s = self._wait_s()
            if wait_s is None:
                await self._woken.wait()
            elif wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._woken.wait()
            self._woken.clear()
            if self._stopping:
                break
            await self._run_step()
        if self._draining:
            await self._run_step()

    async def _run_step(self) -> None:
        try:
            await self._step()
        except Exception:
            log.exception("background step failed; the worker goes on", worker=self.name)
