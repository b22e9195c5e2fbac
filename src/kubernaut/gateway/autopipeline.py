"""Auto-pipelining: commands submitted while a batch is on the wire leave together in the next write, on
one connection. Concurrent webhooks share round trips and skip per-call pool bookkeeping; each webhook
still sends exactly its own command. Commands that must reach a replica before their caller answers share
one ``WAIT`` at the end of their batch (it covers every earlier write on the connection)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from kubernaut.background import Worker

# The batch's own timeout bounds all its reads; redis-py's per-read socket timeout would arm and cancel a
# timer for every reply (about 5 % of the gateway's CPU on single-alert webhooks). math.inf is redis-py's
# "no timeout for this read" (8.x; pyproject.toml pins the range).
_NO_READ_TIMEOUT = math.inf


class Unanswered(RedisConnectionError):
    """The command was sent but no reply came: it may have run (or may still run, on a hung master)."""


@dataclass(slots=True)
class _Call:
    packed: bytes
    future: asyncio.Future[Any]
    replicate: bool


class AutoPipeline:
    """One Redis connection on which concurrent callers' commands leave together in the next write."""

    def __init__(self, pool: ConnectionPool, timeout_s: float, replica_wait_ms: int) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._wait = hiredis.pack_command(("WAIT", 1, replica_wait_ms))  # type: ignore[arg-type]
        self._pending: list[_Call] = []
        self._conn: AbstractConnection | None = None
        self._stale = False
        self.answered_by: tuple[str, int] | None = None  # the address of the last batch's server
        self._sender = Worker("gateway-redis-autopipeline", self._send_pending)

    def start(self) -> None:
        self._sender.start()

    async def close(self) -> None:
        await self._sender.stop(timeout_s=self._timeout_s)  # bounded: see RedisState.close
        await self._discard()

    async def execute(self, packed: bytes, replicate: bool = False) -> Any:
        """Send one packed command; its reply, or its error reply raised as ResponseError. With
        ``replicate``: ``(reply, replicas)``, the number of replicas that acknowledged its writes."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(packed, future, replicate))
        self._sender.wake()
        return await future

    async def reset(self) -> None:
        """Abandon the connection (the master moved): an in-flight batch fails and its callers retry; the
        next batch connects afresh, which asks Sentinel for the master."""
        self._stale = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.disconnect()

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()
            await self._pool.release(conn)

    async def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._send(batch)

    async def _send(self, batch: list[_Call]) -> None:
        sent = False
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._stale:
                    self._stale = False
                    await self._discard()
                if self._conn is None:
                    self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                conn = self._conn
                wait = any(call.replicate for call in batch)
                packed = [call.packed for call in batch] + ([self._wait] if wait else [])
                await conn.send_packed_command(b"".join(packed), check_health=False)
                sent = True
                held: list[tuple[_Call, Any]] = []
                for call in batch:
                    try:
                        reply = await conn.read_response(timeout=_NO_READ_TIMEOUT)
                    except ResponseError as err:  # an error reply; the connection stays in sync
                        if not call.future.done():
                            call.future.set_exception(err)
                    else:
                        if call.replicate:
                            held.append((call, reply))
                        elif not call.future.done():
                            call.future.set_result(reply)
                if wait:
                    replicas = int(await conn.read_response(timeout=_NO_READ_TIMEOUT))
                    for call, reply in held:
                        if not call.future.done():
                            call.future.set_result((reply, replicas))
                self.answered_by = (str(getattr(conn, "host", "")), int(getattr(conn, "port", 0)))
        except BaseException as err:
            failure: Exception
            if not isinstance(err, Exception):
                failure = ConnectionError("pipeline closed")
            elif sent:
                failure = Unanswered(repr(err))
            else:
                failure = err
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(failure)
            await self._discard()
            if not isinstance(err, Exception):
                raise
