"""Credentials the tests send to the stack's service processes."""

from __future__ import annotations

from kubernaut.localstack import LocalStack


def context_api_headers(stack: LocalStack) -> dict[str, str]:
    """``Authorization`` for the Context-API when the stack gives it a token. The one place to wire the
    Context-API's bearer auth into the process-level tests (fuzz suite, HTTP edge cases): the attribute
    name below is a guess until that auth lands."""
    token = getattr(stack, "context_api_token", None)
    return {"Authorization": f"Bearer {token}"} if token else {}


def gateway_headers(stack: LocalStack) -> dict[str, str]:
    token = stack.gateway_token
    return {"Authorization": f"Bearer {token}"} if token else {}
