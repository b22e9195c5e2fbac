"""Fuzzing the live Context-API: no 5xx, every error a problem naming the field, no change from a
refused outcome, injection strings answered like any unknown value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubernaut_tools.localstack import LocalStack
from tests.fuzzing.checks import check_response, query_string
from tests.fuzzing.strategies import CONTENT_TYPES, INJECTIONS, bodies, outcomes, queries, texts
from tests.fuzzing.support import Db, fuzz
from tests.gateway.helpers import PROMETHEUS, unique
from tests.service_auth import context_api_headers, gateway_headers

pytestmark = pytest.mark.stack
ENDPOINTS = (
    "/api/v1/incidents",
    "/api/v1/aggregations/success-rate",
    "/api/v1/aggregations/namespaces",
    "/api/v1/aggregations/severity",
    "/api/v1/aggregations/trend",
)
UNKNOWN = "zz-no-such-value"
# A filter no test writes, beside the injected one: other tests (the gateway's fuzz among them) may store
# an injection string as a value, which must then be found like any other; scoped, both answers are empty.
UNWRITTEN = "zz-fuzz-never-written"
_SEVERITY_ONLY = "/api/v1/aggregations/namespaces"  # no namespace filter there


@pytest.fixture(scope="module")
def client(stack: LocalStack, context_api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=context_api, headers=context_api_headers(stack), timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def incident(stack: LocalStack, fuzz_gateway: str) -> int:
    """A fresh incident (through the gateway) for the outcome bodies to land on."""
    alert = {"status": "firing", "labels": {"alertname": unique("FuzzOutcome"), "namespace": "shop"}}
    resp = httpx.post(
        fuzz_gateway + PROMETHEUS, json={"alerts": [alert]}, headers=gateway_headers(stack), timeout=30
    )
    assert resp.status_code == 201, resp.text
    request_id: int = resp.json()["signals"][0]["request_id"]
    return request_id


@fuzz
@given(path=st.sampled_from(ENDPOINTS), pairs=queries())
def test_queries(client: httpx.Client, path: str, pairs: list[tuple[str, str]]) -> None:
    resp = client.get(f"{path}?{query_string(pairs)}")
    check_response(resp, (path, pairs))


@fuzz
@given(raw=texts)
def test_incident_ids(client: httpx.Client, raw: str) -> None:
    path = quote(raw.encode(errors="surrogatepass"), safe="")
    if path in ("", ".", ".."):
        return
    resp = client.get(f"/api/v1/incidents/{path}")
    check_response(resp, raw)


def _without_filters(resp: httpx.Response) -> Any:
    body = resp.json()
    if isinstance(body, dict):
        body.pop("filters", None)
    return body


@fuzz
@given(
    path=st.sampled_from(ENDPOINTS),
    name=st.sampled_from(("alertname", "severity", "namespace", "fingerprint", "action")),
    injection=st.sampled_from(INJECTIONS),
)
def test_injection_strings_are_unknown_values(
    client: httpx.Client, path: str, name: str, injection: str
) -> None:
    if name != "alertname":
        scope = ("alertname", UNWRITTEN)
    else:
        scope = ("severity" if path == _SEVERITY_ONLY else "namespace", UNWRITTEN)
    resp = client.get(f"{path}?{query_string([scope, (name, injection)])}")
    check_response(resp, (path, name, injection))
    if resp.status_code == 400:
        assert resp.json()["field"] == name
        return
    baseline = client.get(f"{path}?{query_string([scope, (name, UNKNOWN)])}")
    assert resp.status_code == baseline.status_code == 200, (resp.text, baseline.text)
    assert _without_filters(resp) == _without_filters(baseline)


@fuzz
@given(body=bodies(outcomes()), content_type=st.sampled_from(CONTENT_TYPES))
def test_outcome_bodies(
    client: httpx.Client, sync_db: Db, incident: int, body: bytes, content_type: str
) -> None:
    sql = "SELECT action, succeeded, detail FROM remediation_outcomes WHERE request_id = $1"
    before = sync_db.row(sql, incident)
    headers = {"content-type": content_type} if content_type else {}
    resp = client.post(f"/api/v1/incidents/{incident}/outcome", content=body, headers=headers)
    check_response(resp, body[:300])
    after = sync_db.row(sql, incident)
    if resp.status_code >= 400 or before is not None:
        assert after == before, (resp.status_code, body[:300])
    else:
        assert after is not None
        assert orjson.loads(resp.content)["id"] == incident
