"""Fuzzing the live gateway: no 5xx, every error a problem naming the field, no row from a refused
request, injection strings stored like any other value."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubernaut_tools.localstack import LocalStack
from tests.fuzzing.checks import check, check_response, raw_request
from tests.fuzzing.strategies import CONTENT_TYPES, INJECTIONS, bodies, dumps, events, webhooks
from tests.fuzzing.support import Db, fuzz
from tests.gateway.helpers import EVENTS, PROMETHEUS
from tests.service_auth import gateway_headers

pytestmark = pytest.mark.stack
MARK = "FZMARK"  # replaced by a marker unique to each example, so its rows can be counted


@pytest.fixture(scope="module")
def client(stack: LocalStack, fuzz_gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_gateway, headers=gateway_headers(stack), timeout=30) as c:
        yield c


def _rows(sync_db: Db, marker: str) -> int:
    count: int = sync_db.val(
        "SELECT count(*) FROM remediation_requests WHERE signal_name LIKE $1", marker + "%"
    )
    return count


def _post(
    client: httpx.Client, sync_db: Db, path: str, body: bytes, content_type: str, chunked: bool
) -> None:
    marker = f"fz{uuid.uuid4().hex}"
    body = body.replace(MARK.encode(), marker.encode())
    headers = {"content-type": content_type} if content_type else {}
    half = len(body) // 2
    content: Any = iter([body[:half], body[half:]]) if chunked else body
    resp = client.post(path, content=content, headers=headers)
    check_response(resp, body[:300])
    if resp.status_code >= 400:
        assert _rows(sync_db, marker) == 0, body[:300]
        return
    answers = resp.json()["signals"]
    for answer in answers:
        if answer["outcome"] == "rejected":
            assert answer["field"]
            assert answer["reason"] in ("invalid", "nul", "too_long")
            assert answer["request_id"] is None
    ids = [a["request_id"] for a in answers if a["request_id"] is not None]
    assert sync_db.val(
        "SELECT count(*) FROM remediation_requests WHERE id = ANY($1::bigint[])", set(ids)
    ) == len(set(ids))


@fuzz
@given(body=bodies(webhooks(MARK)), content_type=st.sampled_from(CONTENT_TYPES), chunked=st.booleans())
def test_webhooks(client: httpx.Client, sync_db: Db, body: bytes, content_type: str, chunked: bool) -> None:
    _post(client, sync_db, PROMETHEUS, body, content_type, chunked)


@fuzz
@given(body=bodies(events(MARK)), content_type=st.sampled_from(CONTENT_TYPES), chunked=st.booleans())
def test_events(client: httpx.Client, sync_db: Db, body: bytes, content_type: str, chunked: bool) -> None:
    _post(client, sync_db, EVENTS, body, content_type, chunked)


@fuzz
@given(
    injection=st.sampled_from(INJECTIONS),
    label=st.sampled_from(("alertname", "namespace", "pod", "severity")),
)
def test_injection_strings_are_stored_like_any_value(
    client: httpx.Client, sync_db: Db, injection: str, label: str
) -> None:
    marker = f"fz{uuid.uuid4().hex}"
    labels = {"alertname": marker, "namespace": "shop", "pod": "api-0", "severity": "warning"}
    labels[label] = marker + injection if label == "alertname" else injection
    resp = client.post(
        PROMETHEUS,
        content=dumps({"alerts": [{"status": "firing", "labels": labels}]}),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 201, resp.text
    (answer,) = resp.json()["signals"]
    row = sync_db.row(
        "SELECT signal_name, namespace, resource_name, severity FROM remediation_requests WHERE id = $1",
        answer["request_id"],
    )
    assert row == {
        "signal_name": labels["alertname"],
        "namespace": labels["namespace"],
        "resource_name": labels["pod"],
        "severity": labels["severity"].lower(),
    }


def _tricks(auth: str, body: bytes) -> list[tuple[bytes, bytes]]:
    line = f"POST {PROMETHEUS} HTTP/1.1\r\nHost: gateway\r\nAuthorization: {auth}".encode()
    json_type = b"\r\nContent-Type: application/json"
    length = f"\r\nContent-Length: {len(body)}".encode()
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return [
        (line + json_type + b"\r\nContent-Type: text/plain" + length, body),
        (line + b"\r\nContent-Type: text/plain" + json_type + length, body),
        (line + json_type + length + f"\r\nContent-Length: {len(body) + 5}".encode(), body + b"12345"),
        (line + json_type + length + b"\r\nTransfer-Encoding: chunked", chunk),
        (line + json_type + b"\r\nTransfer-Encoding: chunked", chunk),
        (line + json_type + b"\r\nTransfer-Encoding: chunked", b"zz\r\n" + body + b"\r\n0\r\n\r\n"),
        (line + json_type + b"\r\nTransfer-Encoding: gzip, chunked", chunk),
        (line + json_type + b"\r\nContent-Length: 1000000000000", body),
        (line + json_type + b"\r\nContent-Length: -1", body),
        (line + json_type + b"\r\nContent-Length: 0x10", body),
        (line + json_type + length + b"\r\nExpect: 100-continue", body),
        (line.replace(b"HTTP/1.1", b"HTTP/1.0") + json_type + length, body),
        (line + json_type + length + f"\r\nAuthorization: {auth}".encode(), body),
        (line + json_type + length + b"\r\nX-Folded: a\r\n b", body),
        (line + json_type + length + b"\r\nX-Nul: a\x00b", body),
        (line + json_type + length + b"\r\nBad Header: x", body),
        (line + b"\r\nContent-Type: application/json\x00" + length, body),
        (line + json_type + length + b"\r\nContent-Encoding: gzip", body),
    ]


@fuzz
@given(trick=st.integers(min_value=0, max_value=17), body=webhooks(MARK).map(dumps))
def test_transport_tricks(stack: LocalStack, fuzz_gateway: str, sync_db: Db, trick: int, body: bytes) -> None:
    marker = f"fz{uuid.uuid4().hex}"
    body = body.replace(MARK.encode(), marker.encode())
    head, payload = _tricks(gateway_headers(stack).get("Authorization", ""), body)[trick]
    status, content_type, answer = raw_request(fuzz_gateway, head, payload)
    if status == 0:  # the server closed the connection on a framing error: nothing taken
        assert _rows(sync_db, marker) == 0
        return
    check(status, content_type, answer, (trick, head))
    if status >= 400:
        assert _rows(sync_db, marker) == 0, (trick, head)
