"""The HTTP server of both services: uvicorn (uvloop + httptools) with bounded request heads and read times.

httptools accepts a request head of any size and uvicorn waits for it forever, so one slow or huge head
per connection could hold a worker's memory and event loop (issue 13). :class:`BoundedHttpToolsProtocol`
answers 431 once the head passes ``max_header_bytes``, 408 when the head or the body takes longer than
its timeout, and RFC 7807 bodies instead of uvicorn's text/plain 400.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from kubernaut import tls
from kubernaut.config import HttpSettings
from kubernaut.problems import PROBLEM_JSON, problem_body, title

# After a refusal, what the client still sends is read and dropped this long, so that it reads the
# answer instead of a reset (closing with unread input makes the kernel send RST).
_LINGER_S = 1.0


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on a request's head (size, time) and body (time), and the problem type of a refusal."""

    max_header_bytes: int = 16384
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def of(cls, http: HttpSettings) -> HttpLimits:
        return cls(http.max_header_bytes, http.header_timeout_s, http.body_timeout_s)


# Python's cyclic collector runs a young collection every 700 container allocations by default; a
# 50-alert webhook makes thousands, and every tenth young collection of the middle generation leads, in
# time, to a full one that walks every object of the process. Under load that was 17 % of the gateway's
# CPU, 50-60 ms per full collection (benchmarks/README.md, round 7). What exists once the app is loaded
# (modules, schemas, settings) lives as long as the process: it is frozen out of the collector's view.
# Reference counting still frees acyclic garbage at once; only cycles wait longer.
GC_THRESHOLDS = (20_000, 10, 10)


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus our limits; pickled as a whole into each worker process."""

    def __init__(self, app: Any, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits

    def load(self) -> None:
        """Load the app (in the serving process, each worker's own), then tune the collector for serving."""
        super().load()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


class _HeadTooLarge(Exception):
    pass


class _HeadHoldingTransport:
    """The transport as one response sees it: the head is held until the body's first write, so both
    leave in one write (one syscall, one TCP segment) where uvicorn would make two."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size bound on the request head and time bounds on the
    head (from the connection's first byte wait, or the request's first byte) and the body."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = config.limits if isinstance(config, ServerConfig) else HttpLimits()
        self._in_head = True
        self._head_received = 0  # bytes read while the head is incomplete (bounds httptools' buffer)
        self._head_parsed = 0  # exact size of the parsed request line and headers
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False

    # -- timers --------------------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._head_received == 0:  # an idle connection that never sent a request: just close
            self.transport.close()
            return
        self._refuse(
            408, "request-timeout", f"the request head took longer than {self._limits.header_timeout_s} s"
        )

    def _body_timed_out(self) -> None:
        self._timer = None
        self._refuse(
            408, "request-timeout", f"the request body took longer than {self._limits.body_timeout_s} s"
        )

    # -- answers -------------------------------------------------------------------------------------

    def _refuse(self, status: int, slug: str, detail: str, field: str | None = None) -> None:
        """Answer ``status`` (unless a response is already on the wire) and close the connection."""
        if self._lingering or self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            payload = orjson.dumps(problem_body(status, slug, detail, field=field))
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, title(status).encode(), PROBLEM_JSON.encode(), len(payload), payload)
            )
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() gets http.disconnect; its send is dropped
            self.cycle.message_event.set()
        self._lingering = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(_LINGER_S, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "malformed-request", msg, field="(request)")

    def _too_large(self) -> None:
        self._refuse(
            431,
            "header-too-large",
            f"the request line and headers exceed {self._limits.max_header_bytes} bytes",
            field="(headers)",
        )

    # -- protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # neither service speaks WebSocket
            return
        except httptools.HttpParserError as err:
            if isinstance(err.__context__, _HeadTooLarge):
                self._too_large()
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head and self._head_received > self._limits.max_header_bytes:
            self._too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_parsed = 0
        if self._timer is None:  # a keep-alive request: its head time starts at its first byte
            self._arm(self._limits.header_timeout_s, self._head_timed_out)

    def _count(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > self._limits.max_header_bytes:
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self._limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            held = _HeadHoldingTransport(self.transport)
            cycle.transport = cast(asyncio.Transport, held)
            complete = cycle.on_response

            def on_response() -> None:
                held.flush()  # a HEAD answer: no body write followed its head
                complete()

            cycle.on_response = on_response

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_received = 0
        super().on_message_complete()


def cpu_quota(cpu_max: str) -> int | None:
    """Whole cores allowed by a cgroup v2 ``cpu.max`` line (``"<quota> <period>"`` or ``"max ..."``)."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def default_workers() -> int:
    """One worker per core this process may run on: its CPU affinity, capped by its cgroup's CPU limit
    (a container sees every core of its node but may be allowed only a few)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota = cpu_quota(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    return min(cores, quota) if quota else cores


def _listen(host: str, port: int, *, reuse_port: bool, backlog: int) -> socket.socket:
    """The listening socket, bound before any worker starts; with ``reuse_port`` another process
    (a second gateway instance) may bind the same port and the kernel spreads connections over both."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def run(
    app: Any,
    http: HttpSettings,
    *,
    workers: int = 1,
    factory: bool = False,
    reuse_port: bool = False,
) -> None:
    """Serve ``app`` on ``http`` until SIGTERM/SIGINT. With ``workers`` > 1, ``app`` must pickle (each
    worker process loads it; ``factory`` builds the app there) and the workers share one listening socket."""
    config = ServerConfig(
        app,
        limits=HttpLimits.of(http),
        host=http.host,
        port=http.port,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_level="info",
        log_config=None,  # uvicorn's records go through logs.configure's JSON handler
        server_header=False,
        proxy_headers=False,  # the rate-limit source is the peer address; forwarded headers could fake it
        workers=workers,
        factory=factory,
        **tls.uvicorn_options(http),
    )
    server = uvicorn.Server(config)
    sock = _listen(http.host, http.port, reuse_port=reuse_port, backlog=config.backlog)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
            return
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise SystemExit(3)  # uvicorn's start-up failure status
