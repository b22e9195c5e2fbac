"""The invariants every answer must keep, and a raw HTTP/1.1 client for transport tricks."""

from __future__ import annotations

import re
import socket
from urllib.parse import quote, urlsplit

import httpx
import orjson

from kubernaut.problems import TYPE_PATTERN

PROBLEM_JSON = "application/problem+json"
# Bad input answered by the application: the problem names the offending field.
NAMES_A_FIELD = {400, 401, 404, 405, 413, 415, 431}
# uvicorn's own answer to a request it cannot parse as HTTP/1.1 (never reaches the application).
UNPARSEABLE = b"Invalid HTTP request received."


def check(status: int, content_type: str, body: bytes, what: object) -> None:
    assert status < 500, (status, body[:500], what)
    if status < 400:
        return
    if status == 400 and body == UNPARSEABLE:
        return
    assert content_type == PROBLEM_JSON, (status, content_type, body[:300], what)
    problem = orjson.loads(body)
    assert problem["status"] == status, (problem, what)
    assert re.fullmatch(TYPE_PATTERN, problem["type"]), (problem, what)  # one scheme, both services
    assert problem["title"], (problem, what)
    assert problem["detail"], (problem, what)
    if status in NAMES_A_FIELD:
        assert isinstance(problem.get("field"), str), (problem, what)
        assert problem["field"], (problem, what)


def check_response(resp: httpx.Response, what: object) -> None:
    check(resp.status_code, resp.headers.get("content-type", ""), resp.content, what)


def query_string(pairs: list[tuple[str, str]]) -> str:
    """Percent-encoded as sent on the wire; lone surrogates become the bytes a careless client sends."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs)


def _quote(text: str) -> str:
    return quote(text.encode(errors="surrogatepass"), safe="")


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, str, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body`` on a connection
    of their own; the answer's status, content type and body (the server closes: Connection: close)."""
    parts = urlsplit(url)
    data = b""
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        try:
            sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            # A server answering before reading the whole body closes with data unread: the kernel
            # resets the connection, and what it answered may be lost with it.
            pass
    if not data:
        return 0, "", b""  # closed without an answer we could read
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    status = int(lines[0].split()[1])
    content_type = ""
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            content_type = value.strip().decode()
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return status, content_type, _dechunk(payload) if chunked else payload


def _dechunk(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2 :]
    return out
