"""Context-API replicas for tests: one app instance served in-process (its own L2, metrics registry,
Redis client and PostgreSQL pool) behind an httpx client, and the settings that put it on the stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from kubernaut.config import Settings
from kubernaut.contextapi.app import create_app
from kubernaut.contextapi.auth import load_tokens
from kubernaut.contextapi.runtime import ContextApi
from kubernaut_tools.localstack import LocalStack

SEEDED = 3000
TEST_DB = "contextapi_test"


@dataclass
class Replica:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def api(self) -> ContextApi:
        api: ContextApi = self.app.state.api
        return api

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def metric(self, name: str, **labels: str) -> float:
        """A sample read from this replica's /metrics endpoint (0 when absent)."""
        text = (await self.client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0


# Tests that assert which tier answered need every Redis reply to count: the production timeouts (50 ms,
# a cache fails fast) would send a reply that a loaded machine delayed to L3. test_degradation, which
# tests those timeouts, passes ``timeouts=None`` to keep them.
PATIENT_TIMEOUTS = {"connect_s": 1.0, "socket_s": 1.0}


def make_settings(
    stack: LocalStack,
    dsn: str,
    prefix: str,
    *,
    timeouts: dict[str, float] | None = PATIENT_TIMEOUTS,
    **context_api: Any,
) -> Settings:
    redis = stack.redis_auth(stack.topology.redis_context_port)
    section: dict[str, Any] = {
        "redis": redis if timeouts is None else {**redis, "timeouts": timeouts},
        "key_prefix": prefix,
        "breaker": {"failure_threshold": 3, "reset_timeout_s": 0.5},
        "auth": {"tokens_file": str(stack.run.context_api_tokens_file)},
    }
    section.update(context_api)
    return Settings(context_api=section, postgres={"dsn": dsn, "min_pool": 4, "max_pool": 10})


def write_token(settings: Settings) -> str:
    """A write-scope token of the replica's tokens file (the test client reads and records outcomes)."""
    assert settings.context_api.auth.tokens_file is not None
    tokens = load_tokens(settings.context_api.auth.tokens_file)
    return next(t.secret.decode() for t in tokens if t.scope == "write")


@asynccontextmanager
async def open_replica(settings: Settings) -> AsyncIterator[Replica]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = (
            {"authorization": f"Bearer {write_token(settings)}"} if settings.context_api.auth.enabled else {}
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://context-api", headers=headers
        ) as client:
            # Start-up waits a bounded time for the notification listener's first resync, which
            # invalidates everything cached; on a loaded machine it can come later: wait for it here.
            async def listening() -> bool:
                return bool((await client.get("/healthz")).json().get("notifications") == "listening")

            await eventually(listening, within=30, what="the replica's notification listener")
            yield Replica(app, client)


async def eventually(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Poll an async condition without blocking the event loop the replicas run on."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
