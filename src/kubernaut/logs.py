"""One JSON object per log line for the whole process: structlog's own events and stdlib logging
(uvicorn, asyncpg, redis-py) alike, tracebacks inside the JSON rather than on lines of their own."""

from __future__ import annotations

import logging
import sys
from typing import IO

import structlog
from structlog.typing import Processor

# Libraries whose loggers may carry handlers of their own (uvicorn installs some): they go to the root.
_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "asyncpg", "redis")
# No access log: the services count requests in their metrics. uvicorn's HTTP protocol logs a line per
# request whenever this logger has a handler anywhere up its hierarchy (its access_log setting is applied
# only once, before a worker process configures logging), so it must not reach the root's.
_ACCESS_LOGGER = "uvicorn.access"


def configure(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging through one JSON formatter on ``stream`` (stderr)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers = []
        library.propagate = True
    access = logging.getLogger(_ACCESS_LOGGER)
    access.handlers = []
    access.propagate = False
