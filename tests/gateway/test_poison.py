"""Issue 13 item 1: no field value causes a 5xx; a poison alert is rejected alone, its batch taken."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubernaut.gateway import limits
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import (
    EVENTS,
    PROMETHEUS,
    alert,
    event,
    fetch_rows,
    in_process,
    isolated,
    metric,
    unique,
    webhook,
)

pytestmark = pytest.mark.stack


@pytest.fixture
async def gw(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(isolated(stack), stack.gateway_token) as client:
        yield client


async def test_poison_alert_is_rejected_and_the_good_one_stored(
    gw: httpx.AsyncClient, stack: LocalStack
) -> None:
    name = unique("Good")
    poison = alert(os.urandom(1400).hex(), pod="p")  # 2,800 hex characters: over the btree entry limit
    before = metric((await gw.get("/metrics")).text, "gateway_signals_rejected_total", reason="too_long")
    resp = await gw.post(PROMETHEUS, json=webhook(poison, alert(name, pod="g")))
    assert resp.status_code == 201, resp.text
    bad, good = resp.json()["signals"]
    assert bad["outcome"] == "rejected"
    assert (bad["field"], bad["reason"]) == ("alerts[0].labels.alertname", "too_long")
    assert bad["request_id"] is None
    assert good["outcome"] == "created"
    rows = await fetch_rows(stack, "SELECT id FROM remediation_requests WHERE signal_name = $1", name)
    assert [r["id"] for r in rows] == [good["request_id"]]
    text = (await gw.get("/metrics")).text
    assert metric(text, "gateway_signals_rejected_total", reason="too_long") == before + 1
    assert metric(text, "gateway_signals_received_total", source_type="prometheus", outcome="rejected") == 1


def _with(field: str, value: str, name: str) -> dict[str, Any]:
    a = alert(name, pod="p0")
    if field == "annotation":
        a["annotations"]["description"] = value
    else:
        a["labels"][field] = value
    if field == "exported_namespace":
        del a["labels"]["namespace"]
    if field == "node":
        del a["labels"]["pod"]
    return a


LENGTHS = (1, 63, 64, 65, 253, 254, 1024, 1025, 2704, 2800, 9000)
LIMITS = {
    "alertname": limits.MAX_NAME_BYTES,
    "namespace": limits.MAX_NAMESPACE_BYTES,
    "exported_namespace": limits.MAX_NAMESPACE_BYTES,
    "pod": limits.MAX_RESOURCE_NAME_BYTES,
    "node": limits.MAX_RESOURCE_NAME_BYTES,
    "severity": limits.MAX_SEVERITY_BYTES,
}
FIELDS = ("alertname", "namespace", "exported_namespace", "pod", "node", "severity", "team", "annotation")


@pytest.mark.parametrize("field", FIELDS)
async def test_no_field_length_causes_a_5xx(gw: httpx.AsyncClient, stack: LocalStack, field: str) -> None:
    name = unique("Len")
    for n in LENGTHS:
        for char in ("a", "é", "☃"):  # 1, 2 and 3 bytes in UTF-8
            value = char * n
            resp = await gw.post(
                PROMETHEUS, json=webhook(_with(field, value, name), alert(name, pod=f"g{n}"))
            )
            assert resp.status_code in (201, 202), (field, n, resp.text)
            first = resp.json()["signals"][0]
            over = len(value.encode()) > LIMITS.get(field, len(value.encode()))
            assert (first["outcome"] == "rejected") == over, (field, n, char, first)
            if over:
                assert first["field"] == f"alerts[0].labels.{field}"
            else:
                assert first["request_id"] is not None


@pytest.mark.parametrize(
    "field", ["reason", "involvedObject.kind", "involvedObject.name", "involvedObject.namespace"]
)
async def test_over_long_event_values_are_400_naming_the_field(
    gw: httpx.AsyncClient, stack: LocalStack, field: str
) -> None:
    reason = unique("Evt")
    for n in (2800, 9000):
        payload = event(reason)
        part, _, key = field.rpartition(".")
        (payload[part] if part else payload)[key] = "x" * n
        resp = await gw.post(EVENTS, json=payload)
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["field"] == field
    rows = await fetch_rows(stack, "SELECT id FROM remediation_requests WHERE signal_name = $1", reason)
    assert rows == []
