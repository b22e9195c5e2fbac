"""The operator page's login form is read through the bounded body reader: an oversized form is refused
(413, the login page saying so) at the chunk that passes the limit, not after reading all of it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message

from kubernaut.contextapi.ui.routes import MAX_FORM_BYTES, login

CHUNK = 1024


async def test_an_oversized_form_is_refused_before_it_is_all_read() -> None:
    asked = 0

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"t" * CHUNK, "more_body": asked < 100}

    scope = {"type": "http", "method": "POST", "path": "/ui/login", "headers": []}
    answer = await login(Request(scope, receive))
    assert answer.status_code == 413
    assert b"too large" in answer.body
    assert asked == MAX_FORM_BYTES // CHUNK + 1  # the first chunk over the limit, no further
