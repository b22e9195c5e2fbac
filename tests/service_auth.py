"""Credentials the tests send to the stack's service processes."""

from __future__ import annotations

from kubernaut_tools.localstack import LocalStack


def context_api_headers(stack: LocalStack) -> dict[str, str]:
    """``Authorization`` for the Context-API with the stack's write token (it reads too)."""
    return {"Authorization": f"Bearer {stack.context_api_token}"}


def gateway_headers(stack: LocalStack) -> dict[str, str]:
    token = stack.gateway_token
    return {"Authorization": f"Bearer {token}"} if token else {}
