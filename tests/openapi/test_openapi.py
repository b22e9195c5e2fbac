"""Both services' OpenAPI 3.1 documents: valid, complete, and true of the live services (schemathesis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.routing import Route

from kubernaut.config import Settings
from kubernaut.contextapi import app as contextapi_app
from kubernaut.contextapi import openapi as contextapi_openapi
from kubernaut.gateway import app as gateway_app
from kubernaut.gateway import openapi as gateway_openapi
from kubernaut_tools.localstack import LocalStack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 150  # per service and run; longer runs: see docs/context-api.md "OpenAPI"

SPECS: dict[str, Callable[[], dict[str, Any]]] = {
    "gateway": gateway_openapi.spec,
    "context-api": contextapi_openapi.spec,
}


def _routes(app: Starlette) -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }


@pytest.mark.parametrize("service", SPECS)
def test_document_is_valid_openapi_3_1(service: str) -> None:
    spec = SPECS[service]()
    assert spec["openapi"].startswith("3.1.")
    validate(spec)


def test_every_route_is_documented() -> None:
    settings = Settings.model_validate(
        {"gateway": {"auth": {"enabled": False}}, "context_api": {"auth": {"enabled": False}}}
    )
    for app, spec in (
        (gateway_app.create_app(settings), gateway_openapi.spec()),
        (contextapi_app.create_app(settings), contextapi_openapi.spec()),
    ):
        documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
        assert _routes(app) == documented


def test_every_refusal_is_described() -> None:
    statuses: set[int] = set()
    for spec in (gateway_openapi.spec(), contextapi_openapi.spec()):
        for ops in spec["paths"].values():
            for op in ops.values():
                statuses.update(int(s) for s in op["responses"])
    assert {400, 401, 404, 409, 413, 415, 429, 503} <= statuses


@pytest.fixture(scope="module")
def context_api_url(stack: LocalStack) -> str:
    stack.start_service("context-api", timeout=60)
    return stack.url("context-api")


def _fuzz(base_url: str, token: str | None) -> None:
    served = httpx.get(f"{base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    validate(served.json())
    docs = httpx.get(f"{base_url}/docs", timeout=10)
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    schema = schemathesis.openapi.from_dict(served.json())
    headers = {"Authorization": f"Bearer {token}"} if token else None

    @given(case=schema.as_strategy())
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    run()


def test_schemathesis_gateway(stack: LocalStack, gateway_url: str) -> None:
    _fuzz(gateway_url, stack.gateway_token)


def test_schemathesis_context_api(stack: LocalStack, context_api_url: str) -> None:
    _fuzz(context_api_url, stack.context_api_token)
