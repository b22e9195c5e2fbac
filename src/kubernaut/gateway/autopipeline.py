"""Auto-pipelining: commands submitted while a batch is on the wire leave together in the next write, on
one connection. Concurrent webhooks share round trips and skip per-call pool bookkeeping; each webhook
still sends exactly its own command."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ResponseError


class AutoPipeline:
    def __init__(self, pool: ConnectionPool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._conn: AbstractConnection | None = None
        self._stale = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=self._timeout_s)  # bounded: see RedisState.close
        await self._discard()

    async def execute(self, packed: bytes) -> Any:
        """Send one packed command; its reply, or its error reply raised as ResponseError."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((packed, future))
        self._wakeup.set()
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

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._stale:
                    self._stale = False
                    await self._discard()
                if self._conn is None:
                    self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                conn = self._conn
                await conn.send_packed_command(b"".join(packed for packed, _ in batch), check_health=False)
                for _, future in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as err:  # an error reply; the connection stays in sync
                        if not future.done():
                            future.set_exception(err)
                    else:
                        if not future.done():
                            future.set_result(reply)
        except BaseException as err:
            failure = err if isinstance(err, Exception) else ConnectionError("pipeline closed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            await self._discard()
            if not isinstance(err, Exception):
                raise
