"""Raw HTTP/1.1 over a socket: what httpx will not send (huge or slow heads, short bodies)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import orjson


@dataclass
class Answer:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the connection's start to the end of the answer (or the close)

    def json(self) -> object:
        return orjson.loads(self.body)


def _parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return int(lines[0].split(" ")[1]), headers, body[:length]


async def exchange(
    host: str,
    port: int,
    *parts: bytes,
    pause_s: float = 0.0,
    chunk: int = 65536,
    timeout_s: float = 30.0,
) -> Answer:
    """Send ``parts`` (each in chunks of ``chunk`` bytes, ``pause_s`` between parts), read until the
    answer is complete or the server closes; stop sending once the server answered or reset."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    received = bytearray()

    def complete() -> bool:
        status, headers, body = _parse(bytes(received))
        return status is not None and len(body) >= int(headers.get("content-length", "0"))

    async def read() -> None:
        while not complete():
            data = await reader.read(65536)
            if not data:
                return
            received.extend(data)

    reading = asyncio.create_task(read())
    try:
        for i, part in enumerate(parts):
            if i and pause_s:
                await asyncio.wait([reading], timeout=pause_s)
            for offset in range(0, len(part), chunk):
                if reading.done():
                    break
                writer.write(part[offset : offset + chunk])
                try:
                    await writer.drain()
                except ConnectionError:
                    break
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reading, timeout_s)
    finally:
        reading.cancel()
        writer.close()
    status, headers, body = _parse(bytes(received))
    return Answer(status, headers, body, time.monotonic() - started)


def get(path: str, *extra_headers: bytes) -> bytes:
    head = [f"GET {path} HTTP/1.1".encode(), b"Host: test", *extra_headers]
    return b"\r\n".join(head) + b"\r\n\r\n"
