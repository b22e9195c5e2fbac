"""Requests the gateway writes reach cached answers: a real gateway process takes real webhooks, PostgreSQL
announces the new and resolved requests (migration 010), and both replicas' answers follow within
moments, not the cache TTLs. Occurrence counts are not announced. A PostgreSQL restart is survived."""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from kubernaut.config import AlertTimeSettings, PostgresSettings, Settings
from kubernaut.contextapi.freshness import CHANNEL
from kubernaut.gateway.ingest_protocol import CountBatch
from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.signal import NormalizedSignal, fingerprint
from kubernaut.gateway.store import NewRequest, RequestStore
from kubernaut.store.migrate import migrate
from kubernaut_tools.localstack import LocalStack, postgres
from tests.contextapi.replicas import Replica, eventually, make_settings, open_replica
from tests.gateway.helpers import PROMETHEUS, alert, gateway_process, unique, webhook

T = TypeVar("T")
Json = dict[str, Any]
# Well inside both TTLs (L2 30 s, L1 300 s): an answer that changes this fast was invalidated.
FRESH_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def gateway(stack: LocalStack) -> Iterator[str]:
    """A `kubernaut gateway` process of this module (the stack's config and database), stopped by PID."""
    port = stack.topology.gateway_http + 110
    with gateway_process(stack, "gateway-freshness", port, RATE_LIMIT__MODE="off") as url:
        yield url


@pytest.fixture
def settings(stack: LocalStack, prefix: str) -> Settings:
    """Replicas on the database the gateway writes to."""
    return make_settings(stack, stack.postgres_dsn, prefix)


@asynccontextmanager
async def gateway_client(stack: LocalStack, url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
        yield client


async def send(client: httpx.AsyncClient, *alerts: dict[str, Any]) -> httpx.Response:
    """Post a webhook as Alertmanager would: again after a 503 (PostgreSQL just restarted)."""
    deadline = time.monotonic() + 30
    while True:
        r = await client.post(PROMETHEUS, json=webhook(*alerts))
        if r.status_code != 503 or time.monotonic() > deadline:
            assert r.is_success, r.text
            return r
        await asyncio.sleep(0.2)


def namespace() -> str:
    return f"fresh-{uuid.uuid4().hex[:10]}"


async def cache_on_both(a: Replica, b: Replica, path: str, **params: Any) -> Json:
    """The answer, held in every tier: a loads it (L3 -> L2, L1), b gets it from L1 into its L2."""
    first = await a.get(path, **params)
    assert (first.status_code, first.headers["x-cache"]) == (200, "l3")
    await a.api.cache.idle()
    for replica, tier in ((b, "l1"), (a, "l2"), (b, "l2")):
        again = await replica.get(path, **params)
        assert (again.headers["x-cache"], again.content) == (tier, first.content)
    body: Json = first.json()
    return body


async def until_both(a: Replica, b: Replica, path: str, params: Json, check: Callable[[Json], bool]) -> float:
    """Seconds until ``check(answer)`` holds on both replicas (polled, FRESH_WITHIN_S at most)."""
    start = time.monotonic()
    for replica in (a, b):

        async def fresh(replica: Replica = replica) -> bool:
            r = await replica.get(path, **params)
            return r.status_code == 200 and check(r.json())

        await eventually(fresh, within=FRESH_WITHIN_S, what=f"{path} {params} to change")
    return time.monotonic() - start


async def test_gateway_writes_reach_cached_answers_on_both_replicas(
    stack: LocalStack, gateway: str, settings: Settings
) -> None:
    ns, name = namespace(), unique("Fresh")
    listed = ("/api/v1/incidents", {"namespace": ns})  # tagged ns:<ns>
    by_name = ("/api/v1/incidents", {"alertname": name})  # tagged all
    severity = ("/api/v1/aggregations/severity", {"namespace": ns})

    def open_count(n: int) -> Callable[[Json], bool]:
        return lambda j: [s["open"] for s in j["severities"]] == [n]

    async with (
        open_replica(settings) as a,
        open_replica(settings) as b,
        gateway_client(stack, gateway) as gw,
    ):
        assert (await cache_on_both(a, b, listed[0], **listed[1]))["total"] == 0
        assert (await cache_on_both(a, b, by_name[0], **by_name[1]))["total"] == 0
        assert (await cache_on_both(a, b, severity[0], **severity[1]))["severities"] == []
        told = [await r.metric("context_api_invalidations_total", origin="postgres") for r in (a, b)]

        pods = (alert(name, pod="api-0", namespace=ns), alert(name, pod="api-1", namespace=ns))
        assert (await send(gw, *pods)).status_code == 201
        lag = await until_both(a, b, *listed, lambda j: j["total"] == 2)
        await until_both(a, b, *by_name, lambda j: j["total"] == 2)
        await until_both(a, b, *severity, open_count(2))
        for replica, before in zip((a, b), told, strict=True):
            assert await replica.metric("context_api_invalidations_total", origin="postgres") > before
        print(f"\nnew requests: answers fresh on both replicas {lag * 1000:.0f} ms after the 201")

        incidents = (await a.get(listed[0], **listed[1])).json()["incidents"]
        ids = {i["resource"]["name"]: i["id"] for i in incidents}
        resolved = f"/api/v1/incidents/{ids['api-0']}"
        assert (await cache_on_both(a, b, resolved))["resolved_at"] is None
        await send(gw, alert(name, pod="api-0", namespace=ns, status="resolved"))
        lag = await until_both(a, b, resolved, {}, lambda j: j["resolved_at"] is not None)
        await until_both(a, b, *severity, open_count(1))
        print(f"resolution: the cached incident fresh on both replicas {lag * 1000:.0f} ms after the webhook")

        # A repeat is counted (flushed to PostgreSQL within a second) but not announced: the cached
        # incident keeps its count until its TTL, and nothing is invalidated.
        repeated = f"/api/v1/incidents/{ids['api-1']}"
        assert (await cache_on_both(a, b, repeated))["occurrence_count"] == 1
        told = [await r.metric("context_api_invalidations_total", origin="postgres") for r in (a, b)]
        outcome = (await send(gw, pods[1])).json()["signals"][0]["outcome"]
        assert outcome == "duplicate"
        db = await asyncpg.connect(stack.postgres_dsn)
        try:

            async def counted() -> bool:
                sql = "SELECT occurrence_count FROM remediation_requests WHERE id = $1"
                return bool(await db.fetchval(sql, ids["api-1"]) == 2)

            await eventually(counted, within=30, what="the gateway to flush the repeat's count")
        finally:
            await db.close()
        for replica, before in zip((a, b), told, strict=True):
            cached = await replica.get(repeated)
            assert (cached.headers["x-cache"], cached.json()["occurrence_count"]) == ("l2", 1)
            assert await replica.metric("context_api_invalidations_total", origin="postgres") == before


async def test_a_starting_replica_drops_answers_cached_before_it(
    stack: LocalStack, gateway: str, settings: Settings
) -> None:
    ns, name = namespace(), unique("Unheard")
    async with open_replica(settings) as a:
        assert (await a.get("/api/v1/incidents", namespace=ns)).json()["total"] == 0
        await a.api.cache.idle()  # in L1 now
    async with gateway_client(stack, gateway) as gw:  # announced to nobody: no replica listens
        await send(gw, alert(name, namespace=ns))
    async with open_replica(settings) as b:
        r = await b.get("/api/v1/incidents", namespace=ns)
        assert (r.headers["x-cache"], r.json()["total"]) == ("l3", 1)


async def _notifications(replica: Replica) -> str:
    r = await replica.get("/healthz")
    return str(r.json()["notifications"])


async def test_postgres_restart_stale_answers_then_freshness_returns(
    stack: LocalStack, gateway: str, settings: Settings
) -> None:
    """A change announced just before PostgreSQL stops leaves no fresh answer to give: the last known one
    is given instead (``X-Cache: stale``), as the HA drill's steady reader needs. After the restart the
    listeners reconnect and answers follow the gateway's writes again."""
    ns, name = namespace(), unique("Restart")
    listed = ("/api/v1/incidents", {"namespace": ns})
    async with (
        open_replica(settings) as a,
        open_replica(settings) as b,
        gateway_client(stack, gateway) as gw,
    ):

        async def both(state: str) -> bool:
            return [await _notifications(r) for r in (a, b)] == [state, state]

        assert await both("listening")
        cached = await cache_on_both(a, b, listed[0], **listed[1])
        told = [await r.metric("context_api_invalidations_total", origin="postgres") for r in (a, b)]
        await send(gw, alert(name, pod="api-0", namespace=ns))

        async def invalidated() -> bool:
            now = [await r.metric("context_api_invalidations_total", origin="postgres") for r in (a, b)]
            return all(n > before for n, before in zip(now, told, strict=True))

        await eventually(invalidated, within=FRESH_WITHIN_S, what="both replicas to hear of the request")

        stack.stop_component("postgres", sig=signal.SIGINT)
        try:
            await eventually(lambda: both("reconnecting"), within=30, what="the listeners to notice")
            for replica in (a, b):
                r = await replica.get(listed[0], **listed[1])
                assert r.status_code == 200, (replica is a, r.text)
                assert (r.headers["x-cache"], r.json()) == ("stale", cached)
            assert await a.metric("context_api_cache_hits_total", tier="stale") >= 1
            never_cached = await a.get(listed[0], namespace=ns, limit=7)
            assert never_cached.status_code == 503
        finally:
            await asyncio.to_thread(stack.up, services=False, timeout=90)
        await eventually(lambda: both("listening"), within=15, what="the listeners to reconnect")

        async def fresh(replica: Replica) -> bool:  # each pooled connection from before fails once (stale)
            r = await replica.get(listed[0], **listed[1])
            return r.headers.get("x-cache") in ("l3", "l1") and r.json()["total"] == 1

        for replica in (a, b):
            await eventually(partial(fresh, replica), within=15, what="a fresh answer after the restart")
            again = await replica.get(listed[0], **listed[1])
            assert (again.headers["x-cache"], again.json()["total"]) == ("l2", 1)

        await send(gw, alert(name, pod="api-1", namespace=ns))
        lag = await until_both(a, b, *listed, lambda j: j["total"] == 2)
        print(f"\nafter the restart: fresh on both replicas {lag * 1000:.0f} ms after the webhook")


# -- what the trigger costs the gateway --------------------------------------------------------------

ROWS = 50
ROUNDS = 40


def _signals(tag: str, n: int) -> list[NormalizedSignal]:
    out = []
    for i in range(n):
        ns, pod = f"ns-{i % 3}", f"{tag}-{i}"
        labels = {"alertname": "HighCPU", "namespace": ns, "pod": pod, "severity": "warning"}
        fp = fingerprint("HighCPU", ns, "Pod", pod)
        out.append(NormalizedSignal("prometheus", "HighCPU", True, "warning", ns, "Pod", pod, labels, {}, fp))
    return out


@dataclass
class _Side:
    """One database: migrated, with or without migration 010's triggers; the gateway's store on it and a
    connection listening on the channel."""

    store: RequestStore
    listener: asyncpg.Connection
    heard: list[str] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)
    notified: dict[str, set[int]] = field(default_factory=dict)

    async def measure(self, step: str, write: Awaitable[T]) -> T:
        self.heard.clear()
        start = time.perf_counter()
        result = await write
        self.times.setdefault(step, []).append(time.perf_counter() - start)
        await self.listener.execute("SELECT 1")  # notifications went out at commit, before this answer
        self.notified.setdefault(step, set()).add(len(self.heard))
        return result

    async def round(self, tag: str) -> None:
        """A webhook creating ROWS requests, a flush of their counts, a webhook resolving them."""
        signals = _signals(tag, ROWS)
        now = datetime.now(UTC)
        new = [NewRequest(s, "production", "P1") for s in signals]
        store = self.store
        write = partial(store.write, signal_type="prometheus", source="cost", now=now, storms=[])
        written = await self.measure("insert", write(singles=new, resolves=[]))
        ids = [request_id for request_id, _ in written.singles.values()]
        counts = CountBatch(dict.fromkeys(ids, 2), [], {})
        flush = store.apply_batch(counts, now, uuid.uuid4().hex, "unused:", AlertTimeSettings())
        await self.measure("counts", flush)
        await self.measure("resolve", write(singles=[], resolves=[s.fingerprint for s in signals]))


@asynccontextmanager
async def _side(stack: LocalStack, database: str, triggers: bool) -> AsyncIterator[_Side]:
    t = stack.topology
    admin = await asyncpg.connect(postgres.dsn(t.host, t.postgres_port, stack.postgres_password, "postgres"))
    dsn = postgres.dsn(t.host, t.postgres_port, stack.postgres_password, database)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            if not triggers:
                for trigger in ("remediation_requests_announce_new", "remediation_requests_announce_change"):
                    await conn.execute(f"DROP TRIGGER {trigger} ON remediation_requests")
        finally:
            await conn.close()
        store = RequestStore(PostgresSettings(dsn=dsn, min_pool=1, max_pool=1), GatewayMetrics(), 20)
        await store.start()
        listener = await asyncpg.connect(dsn)
        side = _Side(store, listener)
        await listener.add_listener(CHANNEL, lambda *args: side.heard.append(args[3]))
        try:
            yield side
        finally:
            await listener.close()
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def test_trigger_cost_on_the_gateways_writes(stack: LocalStack) -> None:
    """The gateway's own store, on two databases alike but for the triggers, in alternating rounds."""
    async with (
        _side(stack, "contextapi_cost_on", triggers=True) as on,
        _side(stack, "contextapi_cost_off", triggers=False) as off,
    ):
        for rnd in range(ROUNDS):
            for side in (on, off) if rnd % 2 else (off, on):
                await side.round(f"r{rnd}")
    # One per namespace for a statement creating requests, one per resolved request, none for counts.
    assert on.notified == {"insert": {3}, "counts": {0}, "resolve": {ROWS}}
    assert off.notified == {"insert": {0}, "counts": {0}, "resolve": {0}}
    print(
        f"\ngateway writes of {ROWS} rows in 3 namespaces, median of {ROUNDS} rounds (ms): triggers on / off"
    )
    for step in ("insert", "counts", "resolve"):
        on_ms, off_ms = (statistics.median(side.times[step]) * 1000 for side in (on, off))
        print(f"  {step:8s} {on_ms:6.2f} / {off_ms:6.2f}  ({on_ms - off_ms:+.2f})")
        assert on_ms < 2 * off_ms + 5, "the trigger must stay a small part of the write"
