"""The operator's page takes the Context-API's own bearer tokens (any scope: the page only reads)."""

from __future__ import annotations

from starlette.requests import Request

from kubernaut.contextapi.auth import TokenCheck

COOKIE = "kubernaut_ui"


def token_valid(request: Request, token: str | None) -> bool:
    """``token`` opens the page: a known Context-API token, or anything while auth is off."""
    check: TokenCheck | None = request.app.state.token_check
    if check is None:
        return True
    return token is not None and token != "" and check.accepts(token.encode())
