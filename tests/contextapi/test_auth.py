"""Bearer tokens on the Context-API: nothing but the probes and /metrics answers without one, a read token
cannot record outcomes, and a refused request changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml

from kubernaut.config import ConfigError, Settings
from kubernaut.contextapi.app import create_app
from kubernaut.contextapi.auth import load_tokens
from kubernaut_tools.localstack import LocalStack
from tests.contextapi.replicas import Replica, open_replica
from tests.contextapi.test_api import _incident_without_outcome

PROBLEM = "application/problem+json"
READ_PATHS = [
    "/api/v1/incidents",
    "/api/v1/incidents/1",
    "/api/v1/aggregations/success-rate",
    "/api/v1/aggregations/namespaces",
    "/api/v1/aggregations/severity",
    "/api/v1/aggregations/trend",
]


@pytest.fixture
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    async with open_replica(settings) as r:
        yield r


def bare(replica: Replica) -> httpx.AsyncClient:
    """A client of the same replica without the fixture's token."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=replica.app), base_url="http://context-api")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_problem(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert (body["status"], body["field"]) == (status, "Authorization")
    assert resp.headers["www-authenticate"].startswith('Bearer realm="context-api"')


async def test_no_token_is_401_on_every_data_path(replica: Replica) -> None:
    async with bare(replica) as c:
        for path in READ_PATHS:
            assert_problem(await c.get(path), 401)
        assert_problem(
            await c.post("/api/v1/incidents/1/outcome", json={"action": "x", "succeeded": True}), 401
        )
        assert_problem(await c.get("/api/v1/no-such-path"), 401)  # no token, no map of the routes


async def test_probes_and_metrics_stay_open(replica: Replica) -> None:
    async with bare(replica) as c:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await c.get(path)).status_code == 200, path


async def test_unknown_repeated_and_blank_tokens_are_refused(stack: LocalStack, replica: Replica) -> None:
    good = stack.context_api_read_token
    async with bare(replica) as c:
        assert_problem(await c.get("/api/v1/incidents", headers=bearer(good + "x")), 401)
        twice = [("authorization", f"Bearer {good}"), ("authorization", "Bearer wrong")]
        assert_problem(await c.get("/api/v1/incidents", headers=twice), 401)
        assert_problem(await c.get("/api/v1/incidents", headers={"authorization": "Bearer "}), 401)
        assert_problem(await c.get("/api/v1/incidents", headers={"authorization": f"Basic {good}"}), 401)
        # Only SP/HTAB are stripped: a token followed by U+00A0 is another token.
        nbsp = [(b"authorization", f"Bearer {good}\u00a0".encode())]
        assert_problem(await c.get("/api/v1/incidents", headers=nbsp), 401)
        assert (await c.get("/api/v1/incidents", headers=bearer(f"{good} \t"))).status_code == 200
    metrics = await replica.client.get("/metrics")
    assert 'context_api_auth_failures_total{reason="duplicate"} 1.0' in metrics.text


async def test_read_token_reads_but_cannot_record(
    stack: LocalStack, replica: Replica, db: asyncpg.Connection
) -> None:
    incident = await _incident_without_outcome(db)
    url = f"/api/v1/incidents/{incident['id']}/outcome"
    read = bearer(stack.context_api_read_token)
    async with bare(replica) as c:
        for path in READ_PATHS[:1] + READ_PATHS[2:]:
            assert (await c.get(path, headers=read)).status_code == 200, path
        assert (await c.get(f"/api/v1/incidents/{incident['id']}", headers=read)).status_code == 200
        resp = await c.post(url, json={"action": "restart_pod", "succeeded": True}, headers=read)
        assert_problem(resp, 403)
        assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]
        assert (
            await db.fetchval(
                "SELECT count(*) FROM remediation_outcomes WHERE request_id = $1", incident["id"]
            )
            == 0
        )
        write = bearer(stack.context_api_token)
        resp = await c.post(url, json={"action": "restart_pod", "succeeded": True}, headers=write)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outcome"]["action"] == "restart_pod"


def test_tokens_file_is_required_and_checked(stack: LocalStack, context_db: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"context_api\.auth\.tokens_file"):
        create_app(Settings(postgres={"dsn": context_db}))
    bad = tmp_path / "tokens"
    for content, match in [
        ({"a": "plain-token"}, "exactly the keys token and scope"),
        ({"a": {"token": "t", "scope": "admin"}}, "scope of 'a' must be one of read, write"),
        ({"a": {"token": " t", "scope": "read"}}, "without blanks"),
    ]:
        bad.write_text(yaml.safe_dump(content))
        with pytest.raises(ConfigError, match=match):
            load_tokens(bad)
    assert {t.scope for t in load_tokens(stack.run.context_api_tokens_file)} == {"read", "write"}
