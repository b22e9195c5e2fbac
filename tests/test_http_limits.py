"""Issue 13 item 2 on both real services: request heads are bounded in size and time, bodies in time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import gateway_process
from tests.http_raw import Answer, exchange, get

pytestmark = pytest.mark.stack

MIB = 1 << 20


@pytest.fixture(scope="module")
def services(stack: LocalStack) -> dict[str, tuple[str, int]]:
    for name in ("gateway", "context-api"):
        stack.start_service(name, timeout=60)
    out = {}
    for name in ("gateway", "context-api"):
        url = stack.url(name)
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        out[name] = (parts.hostname, parts.port)
    return out


@pytest.mark.parametrize("service", ["gateway", "context-api"])
async def test_one_mib_heads_get_431_quickly_while_healthz_stays_fast(
    services: dict[str, tuple[str, int]], service: str
) -> None:
    host, port = services[service]
    big_value = get("/healthz", b"X-Big: " + b"a" * MIB)
    many_headers = get("/healthz", *(b"X-H%d: %s" % (i, b"v" * 100) for i in range(10000)))
    attacks = [asyncio.create_task(exchange(host, port, big_value, timeout_s=5)) for _ in range(3)]
    attacks.append(asyncio.create_task(exchange(host, port, many_headers, timeout_s=5)))
    probes: list[Answer] = []
    while not all(a.done() for a in attacks):
        probes.append(await exchange(host, port, get("/healthz", b"Connection: close"), timeout_s=5))
    for attack in attacks:
        answer = attack.result()
        assert answer.status == 431, answer
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["field"] == "(headers)"  # type: ignore[index]
        assert answer.seconds < 2.0
    assert probes
    assert all(p.status == 200 and p.seconds < 2.0 for p in probes), probes


@pytest.mark.parametrize("service", ["gateway", "context-api"])
async def test_a_head_at_the_limit_is_served(services: dict[str, tuple[str, int]], service: str) -> None:
    host, port = services[service]
    request = get("/healthz", b"Connection: close", b"X-Pad: ")
    pad = 16384 - len(request) + 4  # the limit counts the request line and each header's bytes
    answer = await exchange(host, port, get("/healthz", b"Connection: close", b"X-Pad: " + b"p" * pad))
    assert answer.status == 200


@pytest.mark.parametrize("service", ["gateway", "context-api"])
async def test_malformed_request_is_a_problem_json_400(
    services: dict[str, tuple[str, int]], service: str
) -> None:
    host, port = services[service]
    answer = await exchange(host, port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/problem+json"


# The gateway's head and body timeouts below; its event loop's timers may fire up to a millisecond early
# (uvloop rounds to milliseconds), and the test's clock starts after the server's.
TIMEOUT_S, TIMER_SLACK_S = 1.0, 0.01


@pytest.fixture(scope="module")
def quick_gateway(stack: LocalStack) -> Iterator[tuple[str, int]]:
    """A gateway process with one-second head and body timeouts."""
    port = stack.topology.gateway_http + 120
    with gateway_process(
        stack,
        "gateway-timeouts",
        port,
        HTTP__HEADER_TIMEOUT_S=str(TIMEOUT_S),
        HTTP__BODY_TIMEOUT_S=str(TIMEOUT_S),
    ) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        yield parts.hostname, port


async def test_slow_head_gets_408_after_the_head_timeout(quick_gateway: tuple[str, int]) -> None:
    host, port = quick_gateway
    # The head trickles in and never ends (slowloris): only the timeout can end it.
    answer = await exchange(
        host, port, b"GET /healthz HTTP/1.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", pause_s=0.4, timeout_s=10
    )
    assert answer.status == 408
    assert answer.headers["content-type"] == "application/problem+json"
    assert TIMEOUT_S - TIMER_SLACK_S <= answer.seconds < 5.0


async def test_short_body_gets_408_after_the_body_timeout(
    quick_gateway: tuple[str, int], stack: LocalStack
) -> None:
    host, port = quick_gateway
    head = (
        b"POST /api/v1/signals/prometheus HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + stack.gateway_token.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = await exchange(host, port, head + b'{"version": "4", ', timeout_s=10)
    assert answer.status == 408
    assert TIMEOUT_S - TIMER_SLACK_S <= answer.seconds < 5.0


async def test_idle_connection_is_closed_after_the_head_timeout(quick_gateway: tuple[str, int]) -> None:
    host, port = quick_gateway
    answer = await exchange(host, port, timeout_s=10)
    assert answer.status is None
    assert TIMEOUT_S - TIMER_SLACK_S <= answer.seconds < 5.0


async def test_keep_alive_requests_each_get_their_own_head_time(quick_gateway: tuple[str, int]) -> None:
    host, port = quick_gateway
    # Five requests on one connection over more than one head timeout in all, each head prompt.
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(5):
            writer.write(get("/healthz"))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.startswith(b"HTTP/1.1 200")
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await reader.readexactly(15)  # {"status":"ok"}
            await asyncio.sleep(0.3)
    finally:
        writer.close()


@pytest.mark.parametrize("service", ["gateway", "context-api"])
async def test_pipelined_get_head_get_are_answered_in_order(
    services: dict[str, tuple[str, int]], service: str
) -> None:
    # Each response's head is held until its body's write (one write per response): a HEAD answer has
    # no body write, so its head must still leave, in order, before the next answer.
    host, port = services[service]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = b"HEAD /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
        writer.write(get("/healthz") + head + get("/healthz", b"Connection: close"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 3
    first, second, third = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"}")  # a body
    assert second.endswith(b"\r\n\r\n")  # HEAD: a head only
    assert third.endswith(b"}")
