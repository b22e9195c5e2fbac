"""Issue 4: per-source rate limiting (enforce and shadow), bearer-token auth, environment and priority."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    PROMETHEUS,
    alert,
    fetch_rows,
    in_process,
    isolated,
    master_keys,
    unique,
    webhook,
)

pytestmark = pytest.mark.stack


async def _requests(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    return await fetch_rows(
        stack,
        "SELECT source, namespace, severity, environment, priority FROM remediation_requests"
        " WHERE signal_name = $1 ORDER BY id",
        name,
    )


async def test_over_the_limit_gets_429_and_honouring_retry_after_succeeds(stack: LocalStack) -> None:
    name = unique("Limited")
    settings = isolated(stack, rate_limit={"mode": "enforce", "requests_per_second": 0.5, "burst": 2})
    async with in_process(settings, stack.gateway_token) as gw:
        assert (await gw.post(PROMETHEUS, json=webhook(alert(name, pod="a")))).status_code == 201
        assert (await gw.post(PROMETHEUS, json=webhook(alert(name, pod="b")))).status_code == 201
        limited = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="c")))
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 2
        assert [r["source"] for r in await _requests(stack, name)] == ["local", "local"]
        await asyncio.sleep(retry_after)  # what a well-behaved client does with Retry-After
        honoured = await gw.post(PROMETHEUS, json=webhook(alert(name, pod="c")))
        assert honoured.status_code == 201
        metrics = (await gw.get("/metrics")).text
    assert 'gateway_rate_limited_total{mode="enforce"} 1.0' in metrics
    assert 'gateway_http_requests_total{route="/api/v1/signals/prometheus",status="429"} 1.0' in metrics


async def test_each_source_has_its_own_limit(stack: LocalStack, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"local: {stack.gateway_token}\nother: other-token-123\n")
    name = unique("PerSource")
    settings = isolated(
        stack,
        rate_limit={"mode": "enforce", "requests_per_second": 0.1, "burst": 1},
        auth={"enabled": True, "tokens_file": tokens},
    )
    async with in_process(settings, stack.gateway_token) as gw:
        assert (await gw.post(PROMETHEUS, json=webhook(alert(name, pod="a")))).status_code == 201
        assert (await gw.post(PROMETHEUS, json=webhook(alert(name, pod="b")))).status_code == 429
        other = {"Authorization": "Bearer other-token-123"}
        assert (
            await gw.post(PROMETHEUS, json=webhook(alert(name, pod="b")), headers=other)
        ).status_code == 201
    assert [r["source"] for r in await _requests(stack, name)] == ["local", "other"]


async def test_shadow_mode_lets_requests_pass_and_counts_them(stack: LocalStack) -> None:
    name = unique("Shadow")
    settings = isolated(stack, rate_limit={"mode": "shadow", "requests_per_second": 0.1, "burst": 1})
    async with in_process(settings, stack.gateway_token) as gw:
        statuses = [
            (await gw.post(PROMETHEUS, json=webhook(alert(name, pod=f"p{i}")))).status_code for i in range(3)
        ]
        metrics = (await gw.get("/metrics")).text
    assert statuses == [201, 201, 201]
    assert 'gateway_rate_limited_total{mode="shadow"} 2.0' in metrics
    assert 'gateway_rate_limited_total{mode="enforce"} 0.0' in metrics


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([], "missing"),
        ([b"Bearer wrong-token"], "invalid"),
        # Issue 13 item 5: a second header is refused whichever comes first; only SP/HTAB are stripped.
        ([b"Bearer GOOD", b"Bearer wrong-token"], "duplicate"),
        ([b"Bearer wrong-token", b"Bearer GOOD"], "duplicate"),
        ([b"Bearer GOOD\xa0"], "invalid"),
        ([b"Bearer GOOD\x85"], "invalid"),
        ([b"Bearer \xa0GOOD"], "invalid"),
    ],
)
async def test_missing_or_wrong_token_is_401_and_writes_nothing(
    stack: LocalStack, values: list[bytes], reason: str
) -> None:
    name = unique("NoAuth")
    settings = isolated(stack)
    assert stack.gateway_token
    good = stack.gateway_token.encode()
    async with in_process(settings, None) as gw:
        headers = [(b"authorization", v.replace(b"GOOD", good)) for v in values]
        resp = await gw.post(PROMETHEUS, json=webhook(alert(name)), headers=headers)
        metrics = (await gw.get("/metrics")).text
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert await _requests(stack, name) == []
    assert await master_keys(stack, f"{settings.gateway.key_prefix}dd:*") == []
    assert f'gateway_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_the_token_may_be_padded_with_http_whitespace(stack: LocalStack) -> None:
    assert stack.gateway_token
    async with in_process(isolated(stack), None) as gw:
        header = b"Bearer \t" + stack.gateway_token.encode() + b" \t"
        resp = await gw.post(
            PROMETHEUS, json=webhook(alert(unique("Pad"))), headers=[(b"authorization", header)]
        )
    assert resp.status_code == 201, resp.text


async def test_auth_off_uses_the_client_address_as_source(stack: LocalStack) -> None:
    name = unique("Open")
    async with in_process(isolated(stack, auth={"enabled": False}), None) as gw:
        assert (await gw.post(PROMETHEUS, json=webhook(alert(name)))).status_code == 201
    assert [r["source"] for r in await _requests(stack, name)] == ["127.0.0.1"]


async def test_environment_and_priority_on_each_request(stack: LocalStack) -> None:
    name = unique("Classify")
    prod, stage = unique("prod"), unique("stage")
    settings = isolated(stack, environments={prod: "production", stage: "staging"})
    async with in_process(settings, stack.gateway_token) as gw:
        resp = await gw.post(
            PROMETHEUS,
            json=webhook(
                alert(name, namespace=prod, severity="critical"),
                alert(name, namespace=stage, severity="critical"),
                alert(name, namespace=prod, severity="warning", pod="w"),
                alert(name, namespace="elsewhere", severity="critical"),
                alert(name, namespace=prod, severity="info", pod="i"),
            ),
        )
    assert resp.status_code == 201
    got = {
        (r["namespace"], r["severity"]): (r["environment"], r["priority"])
        for r in await _requests(stack, name)
    }
    assert got == {
        (prod, "critical"): ("production", "P0"),
        (stage, "critical"): ("staging", "P1"),
        (prod, "warning"): ("production", "P1"),
        ("elsewhere", "critical"): ("unknown", "P2"),
        (prod, "info"): ("production", "P3"),
    }


async def test_health_endpoints(stack: LocalStack) -> None:
    async with in_process(isolated(stack), None) as gw:
        assert (await gw.get("/healthz")).json() == {"status": "ok"}
        ready = await gw.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "redis_master": True, "postgres": True}
        metrics = await gw.get("/metrics")
    assert "gateway_redis_available 1.0" in metrics.text
    assert isinstance(metrics, httpx.Response)
