"""Issue 12 item 1, the cross-process part: two gateway processes that take a resolution and a firing of
one fingerprint commit them to PostgreSQL in the other order than Redis ran them, and PostgreSQL ends as
that order would leave it. The order is forced, not raced for: gateway A reaches PostgreSQL through a TCP
proxy the test holds shut while A's webhook has run in Redis, until B's webhook has committed."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import pytest

from kubernaut.gateway.signal import fingerprint
from kubernaut.store import roles
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.tcp_proxy import Proxy
from tests.gateway.helpers import PROMETHEUS, alert, fetch_rows, gateway_process, unique, until_redis, webhook

pytestmark = pytest.mark.stack

T = TypeVar("T")


class _HeldProxy:
    """A proxy to PostgreSQL on an event loop of its own thread (the gateways' start waits block the
    test's loop); ``hold()`` keeps every byte back until ``release()``."""

    def __init__(self, stack: LocalStack) -> None:
        self._loop = asyncio.new_event_loop()
        self._proxy = Proxy(stack.topology.host, stack.topology.postgres_port)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._proxy.handle, stack.topology.host, 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _set(self, is_open: bool) -> None:
        if is_open:
            self._proxy.open.set()
        else:
            self._proxy.open.clear()

    def hold(self) -> None:
        self._call(self._set(False))

    def release(self) -> None:
        self._call(self._set(True))

    def close(self) -> None:
        self.release()
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@contextmanager
def _proxy(stack: LocalStack) -> Iterator[_HeldProxy]:
    proxy = _HeldProxy(stack)
    try:
        yield proxy
    finally:
        proxy.close()


@contextmanager
def _two_gateways(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, proxy_port: int, prefix: str
) -> Iterator[tuple[str, str]]:
    """Gateway A (PostgreSQL through the proxy) and gateway B (direct), sharing one Redis key prefix."""
    port = stack.topology.gateway_http + 171
    dsn = stack.postgres_role_dsn(roles.GATEWAY)
    direct = f":{stack.topology.postgres_port}/"
    assert direct in dsn
    env = {"RATE_LIMIT__MODE": "off", "KEY_PREFIX": prefix, "HTTP__WORKERS": "1"}
    monkeypatch.setenv("KUBERNAUT_POSTGRES__GATEWAY_DSN", dsn.replace(direct, f":{proxy_port}/"))
    with gateway_process(stack, "gateway-race-a", port, **env) as url_a:
        monkeypatch.delenv("KUBERNAUT_POSTGRES__GATEWAY_DSN")
        with gateway_process(stack, "gateway-race-b", port + 1, **env) as url_b:
            yield url_a, url_b


async def _open_ids(stack: LocalStack, name: str) -> list[int]:
    rows = await fetch_rows(
        stack,
        "SELECT id FROM remediation_requests WHERE signal_name = $1 AND resolved_at IS NULL ORDER BY id",
        name,
    )
    return [r["id"] for r in rows]


async def _requests(stack: LocalStack, name: str) -> list[tuple[int, int, bool]]:
    rows = await fetch_rows(
        stack,
        "SELECT id, occurrence_count, resolved_at IS NULL AS open FROM remediation_requests"
        " WHERE signal_name = $1 ORDER BY id",
        name,
    )
    return [(r["id"], r["occurrence_count"], r["open"]) for r in rows]


def _signal(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (201, 202), resp.text
    return dict(resp.json()["signals"][0])


async def test_a_refire_committed_before_the_resolution_redis_ran_first(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis: resolution (A) then re-fire (B). PostgreSQL: the re-fire commits first. The re-fire must open
    a new request, not count onto the one the resolution closes; its repeats count onto the new one."""
    name = unique("RaceA")
    firing = alert(name)
    prefix = f"gwt:{uuid.uuid4().hex[:8]}:"
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    with _proxy(stack) as proxy, _two_gateways(stack, monkeypatch, proxy.port, prefix) as (url_a, url_b):
        async with (
            httpx.AsyncClient(base_url=url_a, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=url_b, headers=headers, timeout=30) as b,
        ):
            first = _signal(await b.post(PROMETHEUS, json=webhook(firing)))
            x, dd = first["request_id"], f"{prefix}dd:{first['fingerprint']}"
            await until_redis(stack, dd, lambda v: v == str(x).encode())  # bound to x

            proxy.hold()
            resolution = webhook({**firing, "status": "resolved"})
            resolving = asyncio.create_task(a.post(PROMETHEUS, json=resolution))
            await until_redis(stack, dd, lambda v: v != str(x).encode())  # it ran in Redis
            refire = _signal(await b.post(PROMETHEUS, json=webhook(firing)))
            proxy.release()
            resolved = _signal(await resolving)

            assert resolved["outcome"] == "resolved"
            assert resolved["request_id"] == x
            assert refire["outcome"] == "created"
            assert refire["request_id"] != x
            assert await _open_ids(stack, name) == [refire["request_id"]]
            again = _signal(await a.post(PROMETHEUS, json=webhook(firing)))
            assert again["request_id"] == refire["request_id"]
            # The repeat may be counted in Redis first (flushed every second).
            expected = [(x, 1, False), (refire["request_id"], 2, True)]
            deadline = time.monotonic() + 10
            while (rows := await _requests(stack, name)) != expected:
                assert time.monotonic() < deadline, rows
                await asyncio.sleep(0.1)


async def test_a_firing_committed_after_the_resolution_redis_ran_later(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis: a new alert fires (A) then resolves (B). PostgreSQL: the resolution commits first. The
    request the firing opens must be closed, not left open for an alert that has resolved."""
    name = unique("RaceB")
    firing = alert(name)
    prefix = f"gwt:{uuid.uuid4().hex[:8]}:"
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    with _proxy(stack) as proxy, _two_gateways(stack, monkeypatch, proxy.port, prefix) as (url_a, url_b):
        async with (
            httpx.AsyncClient(base_url=url_a, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=url_b, headers=headers, timeout=30) as b,
        ):
            proxy.hold()
            opening = asyncio.create_task(a.post(PROMETHEUS, json=webhook(firing)))
            dd = f"{prefix}dd:{fingerprint(name, 'shop', 'Pod', 'api-0')}"
            await until_redis(stack, dd, lambda v: v is not None)  # the firing ran in Redis
            resolved = _signal(await b.post(PROMETHEUS, json=webhook({**firing, "status": "resolved"})))
            proxy.release()
            opened = _signal(await opening)

            assert resolved["outcome"] == "resolved"
            assert opened["outcome"] == "created"
            assert await _open_ids(stack, name) == []
            refire = _signal(await b.post(PROMETHEUS, json=webhook(firing)))
            assert refire["outcome"] == "created"
            assert await _open_ids(stack, name) == [refire["request_id"]]
