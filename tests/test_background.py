"""The background worker's lifecycle: wake, interval, a wake-up during a step, stop with and without drain,
a failing step."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from kubernaut.background import Worker


async def _until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(5):
            while not predicate():  # noqa: ASYNC110 (a plain predicate over the steps' records)
                await asyncio.sleep(0)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_wake_runs_the_step_and_without_an_interval_nothing_else_does() -> None:
    runs: list[int] = []

    async def step() -> None:
        runs.append(1)

    worker = Worker("t", step)
    worker.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert runs == []
    worker.wake()
    await _until(lambda: len(runs) == 1, "one step after one wake")
    await worker.stop()
    assert not worker.running


async def test_first_wait_false_steps_at_once_and_the_interval_repeats() -> None:
    runs: list[float] = []

    async def step() -> None:
        runs.append(asyncio.get_running_loop().time())

    worker = Worker("t", step, interval=0.01, first_wait=False)
    worker.start()
    await _until(lambda: len(runs) >= 3, "three steps")
    await worker.stop()
    assert all(b - a >= 0.009 for a, b in itertools.pairwise(runs))


async def test_a_wake_during_a_step_runs_the_step_again() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    async def step() -> None:
        runs.append(1)
        entered.set()
        await release.wait()

    worker = Worker("t", step)
    worker.start()
    worker.wake()
    await entered.wait()
    worker.wake()  # while the first step runs
    release.set()
    await _until(lambda: len(runs) == 2, "a second step for the wake-up during the first")
    await worker.stop()


async def test_stop_cancels_a_running_step() -> None:
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def step() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    worker = Worker("t", step, first_wait=False)
    worker.start()
    await entered.wait()
    await worker.stop()
    assert cancelled == [True]


async def test_stop_with_drain_lets_the_step_finish_and_runs_it_once_more() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[int] = []

    async def step() -> None:
        entered.set()
        await release.wait()
        finished.append(1)

    worker = Worker("t", step, first_wait=False)
    worker.start()
    await entered.wait()
    stopping = asyncio.ensure_future(worker.stop(drain=True))
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await stopping
    assert finished == [1, 1]
    assert not worker.running


async def test_stop_with_drain_is_bounded() -> None:
    entered = asyncio.Event()

    async def step() -> None:
        entered.set()
        await asyncio.Event().wait()

    worker = Worker("t", step, first_wait=False)
    worker.start()
    await entered.wait()
    async with asyncio.timeout(5):
        await worker.stop(drain=True, timeout_s=0.01)
    assert not worker.running


async def test_a_failing_step_does_not_end_the_worker() -> None:
    runs: list[int] = []

    async def step() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom")

    worker = Worker("t", step)
    worker.start()
    worker.wake()
    await _until(lambda: len(runs) == 1, "the failing step")
    worker.wake()
    await _until(lambda: len(runs) == 2, "a step after the failure")
    assert worker.running
    await worker.stop()


async def test_the_interval_callable_is_asked_before_every_wait() -> None:
    waits = iter([0.0, 0.0, None])
    runs: list[int] = []

    async def step() -> None:
        runs.append(1)

    worker = Worker("t", step, interval=lambda: next(waits))
    worker.start()
    await _until(lambda: len(runs) == 2, "two steps after two zero waits")
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(runs) == 2  # then None: wake-ups only
    await worker.stop()
