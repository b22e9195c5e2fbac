"""The shared problem vocabulary: one type scheme, field paths of pydantic errors, the bounded reader."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from kubernaut.problems import (
    PROBLEM_JSON,
    TYPE_PATTERN,
    Problem,
    problem_body,
    problem_handler,
    read_body,
)
from kubernaut.validation import FieldError, field_errors, field_path


class _Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[_Label]
    labels: dict[str, int] = {}


def _errors(raw: str, **options: Any) -> list[FieldError]:
    with pytest.raises(ValidationError) as err:
        _Doc.model_validate_json(raw)
    return field_errors(err.value, **options)


def test_field_path_brackets_indices_and_names_the_whole() -> None:
    assert field_path(("alerts", 3, "labels", "alertname")) == "alerts[3].labels.alertname"
    assert field_path((0, "x")) == "[0].x"
    assert field_path(()) == "(body)"
    assert field_path((), whole="(root)") == "(root)"
    assert field_path(("", "a")) == "(unnamed).a"
    assert field_path(("redis", "sentinel", "port"), skip=("sentinel",)) == "redis.port"


@given(st.lists(st.one_of(st.integers(min_value=0, max_value=10**6), st.text(max_size=8)), max_size=6))
@settings(max_examples=200)
def test_field_path_keeps_every_part_in_order(loc: list[int | str]) -> None:
    path = field_path(loc)
    assert path
    rest = path
    for part in loc:
        piece = f"[{part}]" if isinstance(part, int) else (part or "(unnamed)")
        assert piece in rest, (loc, path)
        rest = rest[rest.index(piece) + len(piece) :]


def test_field_errors_name_every_field_in_order() -> None:
    errors = _errors('{"items": [{"value": 1}, {"value": "x", "extra": 1}], "labels": {"": "y"}}')
    assert [e.field for e in errors] == ["items[1].value", "items[1].extra", "labels.(unnamed)"]
    assert errors[1].message == "unknown field"
    assert _errors('{"items": [], "more": 1}', unknown="unknown parameter") == [
        FieldError("more", "unknown parameter")
    ]


def test_malformed_json_names_the_whole_body() -> None:
    (error,) = _errors('{"items": [')
    assert error.field == "(body)"
    assert error.message.startswith("malformed JSON: ")


def test_problem_body_has_one_type_scheme_and_reason_phrase_titles() -> None:
    body = problem_body(413, "body-too-large", "too big", instance="/x", field="(body)")
    assert body == {
        "type": "urn:kubernaut:problem:body-too-large",
        "title": "Request Entity Too Large",
        "status": 413,
        "detail": "too big",
        "instance": "/x",
        "field": "(body)",
    }
    assert re.fullmatch(TYPE_PATTERN, str(body["type"]))
    assert set(problem_body(503, "unavailable", "down")) == {"type", "title", "status", "detail"}
    errors = [FieldError("a", "bad"), FieldError("b", "worse", "too_long")]
    assert problem_body(400, "invalid-signal", "a: bad", errors=errors)["errors"] == [
        {"field": "a", "message": "bad"},
        {"field": "b", "message": "worse", "reason": "too_long"},
    ]


def test_problem_response_carries_status_headers_and_media_type() -> None:
    problem = Problem(429, "rate-limited", "slow down", headers={"Retry-After": "3"}, extra={"n": 1})
    response = problem.response("/api")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.media_type == PROBLEM_JSON
    assert b'"n":1' in response.body


# -- the bounded body reader -----------------------------------------------------------------------

LIMIT = 100


async def _echo(request: Request) -> Response:
    media_type = request.query_params.get("media_type", "application/json") or None
    return Response(await read_body(request, LIMIT, media_type))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Route("/echo", _echo, methods=["POST"])], exception_handlers={Problem: problem_handler}
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        yield c


async def test_a_body_within_the_limit_is_read_whole(client: httpx.AsyncClient) -> None:
    body = b"x" * LIMIT
    headers = {"content-type": "application/json; charset=utf-8"}
    answer = await client.post("/echo", content=body, headers=headers)
    assert (answer.status_code, answer.content) == (200, body)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx"])
async def test_another_media_type_is_415_naming_the_header(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = await client.post("/echo", content=b"{}", headers=headers)
    assert answer.status_code == 415
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["field"] == "Content-Type"
    assert answer.json()["type"] == "urn:kubernaut:problem:unsupported-media-type"


async def test_any_media_type_when_none_is_required(client: httpx.AsyncClient) -> None:
    answer = await client.post("/echo?media_type=", content=b"a=b", headers={"content-type": "text/plain"})
    assert (answer.status_code, answer.content) == (200, b"a=b")


async def test_a_declared_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    answer = await client.post("/echo", content=b"x" * (LIMIT + 1), headers=headers)
    assert answer.status_code == 413
    assert answer.json()["field"] == "(body)"
    assert answer.json()["type"] == "urn:kubernaut:problem:body-too-large"


async def test_a_streamed_body_is_refused_before_it_is_all_read() -> None:
    """No Content-Length (chunked): the reader stops at the chunk that passes the limit."""
    asked = 0

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * 30, "more_body": asked < 50}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json")],
    }
    with pytest.raises(Problem) as refused:
        await read_body(Request(scope, receive), LIMIT)
    assert (refused.value.status, refused.value.field) == (413, "(body)")
    assert asked == 4  # 4 x 30 > 100
