"""Bearer tokens for the Context-API, each with a scope: ``read`` may GET, ``write`` may also POST.

/healthz, /readyz, /metrics, /openapi.json and /docs stay open (probes and Prometheus carry no token; none
reveals an incident); the operator page /ui checks its own cookie against the same tokens.
The header is read as the gateway reads it (kubernaut.http_auth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from kubernaut.config import ConfigError
from kubernaut.contextapi.problems import problem
from kubernaut.http_auth import CredentialError, match_token, presented_token

TokenScope = Literal["read", "write"]
FailureReason = Literal["missing", "invalid", "duplicate", "forbidden"]
SCOPES: tuple[TokenScope, ...] = ("read", "write")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
# The operator's page checks the token itself (a cookie, set once from a form or ?token=).
SELF_CHECKED_PATHS = frozenset({"/ui", "/ui/login", "/ui/logout"})
READ_METHODS = frozenset({"GET", "HEAD"})
_HTTP_WHITESPACE = " \t"  # RFC 9110 OWS: only SP and HTAB are stripped, nothing str.strip() also takes


@dataclass(frozen=True)
class Token:
    """One bearer token of the tokens file: its name, secret, and whether it may write (record outcomes)."""

    name: str
    secret: bytes
    scope: TokenScope

    def allows(self, method: str) -> bool:
        return self.scope == "write" or method in READ_METHODS


def load_tokens(path: Path) -> list[Token]:
    """Read the tokens file (YAML ``name: {token: ..., scope: read|write}``); ConfigError names the fault."""
    where = f"context-api tokens file {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {where}: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where} must be a non-empty mapping name: {{token, scope}}")
    tokens = []
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"token", "scope"}:
            raise ConfigError(f"{where}: {name!r} must have exactly the keys token and scope")
        secret, scope = entry["token"], entry["scope"]
        if not isinstance(secret, str) or not secret or secret.strip(_HTTP_WHITESPACE) != secret:
            raise ConfigError(f"{where}: token of {name!r} must be a non-empty string without blanks")
        if scope not in SCOPES:
            raise ConfigError(f"{where}: scope of {name!r} must be one of {', '.join(SCOPES)}")
        tokens.append(Token(str(name), secret.encode(), scope))
    return tokens


class AuthFailure(Exception):
    """A request refused for its credentials; ``reason`` says which check failed."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason)
        self.reason: FailureReason = reason


def _authorization(headers: list[tuple[bytes, bytes]]) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == b"authorization"]


class TokenCheck:
    """Matches a presented bearer token against the tokens file, in constant time."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = {t.name: t for t in tokens}

    def _match(self, candidate: bytes) -> Token:
        return self._tokens[match_token(candidate, ((t.name, t.secret) for t in self._tokens.values()))]

    def accepts(self, candidate: bytes) -> bool:
        """Any known token (the operator's page only reads)."""
        try:
            self._match(candidate)
        except CredentialError:
            return False
        return True

    def identify(self, headers: list[tuple[bytes, bytes]], method: str) -> Token:
        """The token presented, allowed for ``method``; raise AuthFailure."""
        try:
            found = self._match(presented_token(_authorization(headers)))
        except CredentialError as err:
            raise AuthFailure(err.reason) from None
        if not found.allows(method):
            raise AuthFailure("forbidden")
        return found


_DETAILS: dict[FailureReason, str] = {
    "missing": "an Authorization: Bearer token is required",
    "invalid": "unknown token",
    "duplicate": "more than one Authorization header",
    "forbidden": "this token's scope is read; recording outcomes needs a write token",
}


class BearerAuth:
    """ASGI middleware: every path but the open ones needs a token whose scope allows the method."""

    def __init__(self, app: ASGIApp, check: TokenCheck, on_failure: Callable[[str], None]) -> None:
        self.app = app
        self._check = check
        self._on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"] in SELF_CHECKED_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            self._check.identify(scope["headers"], scope["method"])
        except AuthFailure as failure:
            self._on_failure(failure.reason)
            forbidden = failure.reason == "forbidden"
            status = 403 if forbidden else 401
            challenge = 'Bearer realm="context-api"'
            if forbidden:
                challenge += ', error="insufficient_scope", scope="write"'
            response = problem(
                status,
                "forbidden" if forbidden else "unauthorized",
                "Forbidden" if forbidden else "Unauthorized",
                _DETAILS[failure.reason],
                instance=scope["path"],
                field="Authorization",
                headers={"WWW-Authenticate": challenge},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
