"""kubernaut.logs: stdlib records (asyncpg, uvicorn) and structlog events alike are one JSON line each."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

import kubernaut
from kubernaut import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(stream=out)
    try:
        yield out
    finally:
        root.handlers, root.level = saved[0], saved[1]
        structlog.reset_defaults()


def test_a_library_traceback_stays_inside_one_json_line(stream: io.StringIO) -> None:
    try:
        raise ConnectionError("connection lost\nwhile reading")
    except ConnectionError:
        logging.getLogger("asyncpg.pool").exception("pool failure")
    structlog.get_logger("kubernaut.test").info("own event", key="v")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert (first["event"], first["level"], first["logger"]) == ("pool failure", "error", "asyncpg.pool")
    assert "Traceback" in first["exception"]
    assert "while reading" in first["exception"]
    assert (second["event"], second["key"]) == ("own event", "v")


def test_logging_is_configured_in_one_place() -> None:
    """Both services, every worker process and the tools log through :func:`kubernaut.logs.configure`."""
    src = Path(kubernaut.__file__).parent.parent  # src/: the services and the tools
    calls = ("structlog.configure(", "logging.basicConfig(", "dictConfig(", "fileConfig(")
    configuring = {
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if any(call in path.read_text() for call in calls)
    }
    assert configuring == {"kubernaut/logs.py"}


def test_no_access_log_in_any_process(stream: io.StringIO) -> None:
    """uvicorn writes an access line per request when its access logger has a handler up its hierarchy
    (a worker process configures logging after uvicorn applied ``access_log=False``): it must not reach
    the root's."""
    access = logging.getLogger("uvicorn.access")
    assert not access.propagate
    access.info('127.0.0.1:1 - "POST / HTTP/1.1" 201')
    assert stream.getvalue() == ""
