"""Bearer-token authentication. Each token has a name; the name is the source for rate limiting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubernaut.http_auth import (
    CredentialError,
    CredentialFailure,
    configured_token,
    match_token,
    presented_token,
    read_tokens_file,
)
from kubernaut.problems import Problem

_DETAILS: dict[CredentialFailure, str] = {
    "missing": "an Authorization: Bearer token is required",
    "invalid": "unknown token",
    "duplicate": "more than one Authorization header",
}


class AuthFailure(Problem):
    """The 401 problem answer for a missing, unknown or repeated bearer token."""

    def __init__(self, reason: CredentialFailure) -> None:
        super().__init__(
            401,
            "unauthorized",
            _DETAILS[reason],
            field="Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )
        self.reason: CredentialFailure = reason


def load_tokens(path: Path) -> dict[str, bytes]:
    """Read the tokens file (YAML mapping ``name: token``); raise ConfigError naming what is wrong."""
    where = f"gateway tokens file {path}"
    data = read_tokens_file(path, where, "name: token")
    return {str(name): configured_token(token, where, name) for name, token in data.items()}


class TokenAuth:
    """Names a request's source by its bearer token (constant-time match against the configured ones)."""

    def __init__(self, tokens: dict[str, bytes]) -> None:
        self._tokens = list(tokens.items())

    def identify(self, authorization: Sequence[str]) -> str:
        """The token's name from the request's ``Authorization`` header values; raise AuthFailure."""
        try:
            return match_token(presented_token(authorization), self._tokens)
        except CredentialError as err:
            raise AuthFailure(err.reason) from None
