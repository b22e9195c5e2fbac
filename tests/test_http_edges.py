"""Issue 13 item 11 on the real service processes: unrouted requests are problems (no redirects), a
client leaving mid-body is neither an error in the log nor a 500, and every log line is one JSON object."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubernaut_tools.localstack import LocalStack
from tests.service_auth import context_api_headers, gateway_headers

pytestmark = pytest.mark.stack
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def context_api_url(stack: LocalStack) -> str:
    stack.start_service("context-api", timeout=60)
    return stack.url("context-api")


def _sample(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _wait(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _cases(service: str) -> list[tuple[str, str, int]]:
    if service == "gateway":
        return [
            ("GET", "/nope", 404),
            ("GET", "/healthz/", 404),
            ("POST", "/api/v1/signals/prometheus/", 404),
            ("GET", "/api/v1/signals/prometheus", 405),
            ("DELETE", "/healthz", 405),
        ]
    return [
        ("GET", "/nope", 404),
        ("GET", "/api/v1/incidents/", 404),
        ("DELETE", "/api/v1/incidents", 405),
        ("GET", "/api/v1/incidents/1/outcome", 405),
    ]


@pytest.mark.parametrize("service", ["gateway", "context-api"])
def test_unrouted_requests_are_problems_not_redirects(
    stack: LocalStack, gateway_url: str, context_api_url: str, service: str
) -> None:
    url = gateway_url if service == "gateway" else context_api_url
    headers = gateway_headers(stack) if service == "gateway" else context_api_headers(stack)
    for method, path, status in _cases(service):
        resp = httpx.request(method, url + path, headers=headers, follow_redirects=False, timeout=5)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        assert resp.headers["content-type"] == PROBLEM, (method, path)
        body = resp.json()
        assert body["status"] == status
        assert body["field"] == ("method" if status == 405 else "path")
        if status == 405:
            assert resp.headers["allow"]


def _leave_mid_body(url: str, path: str, headers: dict[str, str]) -> None:
    parts = urlsplit(url)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Content-Length: 10000")
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"alerts": [')


@pytest.mark.parametrize("service", ["gateway", "context-api"])
def test_a_client_leaving_mid_body_is_499_not_an_error(
    stack: LocalStack, gateway_url: str, context_api_url: str, service: str
) -> None:
    if service == "gateway":
        url, path, headers = gateway_url, "/api/v1/signals/prometheus", gateway_headers(stack)
        metric, labels = "gateway_http_requests_total", {"route": path}
    else:
        url, path, headers = context_api_url, "/api/v1/incidents/1/outcome", context_api_headers(stack)
        metric, labels = "context_api_requests_total", {"route": "/api/v1/incidents/{id}/outcome"}
    before = {s: _sample(url, metric, status=s, **labels) for s in ("499", "500")}
    log_file = stack.run.log(service)
    seen = log_file.stat().st_size
    _leave_mid_body(url, path, headers)
    _wait(lambda: _sample(url, metric, status="499", **labels) == before["499"] + 1, "the 499 to be counted")
    assert _sample(url, metric, status="500", **labels) == before["500"]
    log = log_file.read_bytes()[seen:].decode()
    assert "Traceback" not in log
    assert '"level": "error"' not in log


@pytest.mark.parametrize("service", ["gateway", "context-api"])
def test_every_log_line_is_one_json_object(
    stack: LocalStack, gateway_url: str, context_api_url: str, service: str
) -> None:
    lines = stack.run.log(service).read_text().splitlines()
    assert lines, "the service logged nothing"
    for line in lines:
        record = orjson.loads(line)
        assert {"event", "level", "timestamp"} <= set(record), line
