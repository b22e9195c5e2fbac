"""The held-head transport (pure): a response's head and body leave in one write, in order; and the
collector's settings of a serving process."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

from kubernaut.httpserver import GC_THRESHOLDS, HttpLimits, ServerConfig, _HeadHoldingTransport, cpu_quota


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _held() -> tuple[_HeadHoldingTransport, _Recorder]:
    recorder = _Recorder()
    return _HeadHoldingTransport(cast(asyncio.Transport, recorder)), recorder


def test_head_and_body_leave_in_one_write() -> None:
    held, out = _held()
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert out.writes == []
    held.write(b"{}")
    assert out.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    held.write(b"more")  # a streamed body's later parts pass straight through
    assert out.writes[-1] == b"more"


def test_a_head_without_body_leaves_on_flush_or_close() -> None:
    held, out = _held()
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.flush()
    assert out.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    held.flush()
    assert len(out.writes) == 1
    held, out = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.close()
    assert out.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert out.closed
    assert held.is_closing()


def test_100_continue_is_not_held() -> None:
    held, out = _held()
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert out.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_cpu_quota_from_cgroup_cpu_max() -> None:
    assert cpu_quota("max 100000\n") is None
    assert cpu_quota("200000 100000\n") == 2
    assert cpu_quota("50000 100000") == 1  # half a core still needs one worker
    assert cpu_quota("150000 100000") == 2
    assert cpu_quota("garbage") is None


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def test_loading_the_app_freezes_what_exists_and_spaces_young_collections() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        ServerConfig(_app, limits=HttpLimits(), lifespan="off").load()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
