"""Invariant 7: bad input gets an RFC 7807 answer naming the field, and changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from kubernaut.config import Settings
from kubernaut.problems import TYPE_PATTERN
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    EVENTS,
    PROMETHEUS,
    alert,
    connect_db,
    event,
    in_process,
    isolated,
    unique,
    webhook,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def settings(stack: LocalStack) -> Settings:
    return isolated(stack, max_body_bytes=4096, max_alerts_per_request=3)


@pytest.fixture
async def gw(stack: LocalStack, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(settings, stack.gateway_token) as client:
        yield client


async def _state(stack: LocalStack, settings: Settings, name: str) -> tuple[int, list[bytes]]:
    db = await connect_db(stack)
    try:
        rows = await db.fetchval("SELECT count(*) FROM remediation_requests WHERE signal_name = $1", name)
    finally:
        await db.close()
    master = stack.current_master()
    assert master is not None
    r = aioredis.Redis(**stack.redis_auth(master[1]))
    try:
        keys = sorted([k async for k in r.scan_iter(match=f"{settings.gateway.key_prefix}*")])
    finally:
        await r.aclose()
    # The count-flush bookkeeping is the gateway's own, not the request's.
    return rows, [k for k in keys if b":flushers" not in k and b":counts" not in k]


def _problem(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = resp.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert re.fullmatch(TYPE_PATTERN, body["type"]), body  # one scheme for both services
    assert body["title"]
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"alerts": [', "(body)"),
        (b'{"version": "4"}', "alerts"),
        (b'{"alerts": []}', "alerts"),
        (
            orjson.dumps({"alerts": [{"status": "firing", "labels": {"namespace": "x"}}]}),
            "alerts[0].labels.alertname",
        ),
        (orjson.dumps({"alerts": [{"status": "pending", "labels": {"alertname": "x"}}]}), "alerts[0].status"),
        (
            orjson.dumps({"alerts": [{"status": "firing", "labels": {"alertname": 5}}]}),
            "alerts[0].labels.alertname",
        ),
    ],
)
async def test_malformed_webhooks_are_400_naming_the_field(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient, payload: bytes, field: str
) -> None:
    before = await _state(stack, settings, "x")
    resp = await gw.post(PROMETHEUS, content=payload, headers={"content-type": "application/json"})
    assert _problem(resp, 400)["field"] == field
    assert await _state(stack, settings, "x") == before


async def test_a_bad_alert_is_rejected_alone(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient
) -> None:
    name = unique("Batch")
    bad = alert(name, pod="b")
    del bad["labels"]["alertname"]
    resp = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="a"), bad))
    assert resp.status_code == 201, resp.text
    good, rejected = resp.json()["signals"]
    assert good["outcome"] == "created"
    assert rejected["outcome"] == "rejected"
    assert (rejected["field"], rejected["reason"]) == ("alerts[1].labels.alertname", "invalid")
    assert (await _state(stack, settings, name))[0] == 1


async def test_a_batch_with_nothing_to_take_is_400(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient
) -> None:
    name = unique("AllBad")
    first, second = alert(name, pod="a"), alert(name, pod="b")
    del first["labels"]["alertname"]
    second["labels"]["alertname"] = "x" * 1025
    body = _problem(await gw.post(PROMETHEUS, json=webhook(first, second)), 400)
    assert body["field"] == "alerts[0].labels.alertname"
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [e["field"] for e in errors] == ["alerts[0].labels.alertname", "alerts[1].labels.alertname"]
    assert await _state(stack, settings, name) == (0, [])


async def test_too_many_alerts_is_400(stack: LocalStack, settings: Settings, gw: httpx.AsyncClient) -> None:
    name = unique("TooMany")
    resp = await gw.post(PROMETHEUS, json=webhook(*(alert(name, pod=f"p{i}") for i in range(4))))
    body = _problem(resp, 400)
    assert body["field"] == "alerts"
    assert "limit of 3" in str(body["detail"])
    assert await _state(stack, settings, name) == (0, [])


async def test_body_over_the_limit_is_413(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient
) -> None:
    name = unique("Big")
    big = alert(name)
    big["annotations"]["description"] = "x" * 5000
    resp = await gw.post(PROMETHEUS, json=webhook(big))
    _problem(resp, 413)

    # Without Content-Length (chunked), the limit holds while reading.
    async def chunks() -> AsyncIterator[bytes]:
        body = orjson.dumps(webhook(big))
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    resp = await gw.post(PROMETHEUS, content=chunks(), headers={"content-type": "application/json"})
    _problem(resp, 413)
    assert await _state(stack, settings, name) == (0, [])


async def test_wrong_content_type_is_415(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient
) -> None:
    name = unique("Type")
    body = orjson.dumps(webhook(alert(name)))
    resp = await gw.post(PROMETHEUS, content=body, headers={"content-type": "text/plain"})
    assert _problem(resp, 415)["field"] == "Content-Type"
    resp = await gw.post(EVENTS, content=orjson.dumps(event(name)), headers={"content-type": "text/plain"})
    _problem(resp, 415)
    assert await _state(stack, settings, name) == (0, [])


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("reason"), "reason"),
        (lambda e: e["involvedObject"].pop("kind"), "involvedObject.kind"),
        (lambda e: e["involvedObject"].update(name=""), "involvedObject.name"),
        (lambda e: e.update(type="Normal"), "type"),
    ],
)
async def test_invalid_events_are_400(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient, mutate: object, field: str
) -> None:
    name = unique("Evt")
    payload = event(name)
    assert callable(mutate)
    mutate(payload)
    resp = await gw.post(EVENTS, json=payload)
    assert _problem(resp, 400)["field"] == field
    assert await _state(stack, settings, name) == (0, [])


async def test_nul_characters_are_refused_not_retried_forever(
    stack: LocalStack, settings: Settings, gw: httpx.AsyncClient
) -> None:
    name = unique("Nul")
    resp = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="a\x00b")))
    assert _problem(resp, 400)["field"] == "alerts[0].labels.pod"
    bad_event = event(name)
    bad_event["message"] = "bad\x00message"
    resp = await gw.post(EVENTS, json=bad_event)
    assert _problem(resp, 400)["field"] == "message"
    assert await _state(stack, settings, name) == (0, [])
