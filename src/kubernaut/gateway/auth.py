"""Bearer-token authentication. Each token has a name; the name is the source for rate limiting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from kubernaut.config import ConfigError
from kubernaut.gateway.problems import Problem
from kubernaut.http_auth import CredentialError, CredentialFailure, match_token, presented_token

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
            "Unauthorized",
            _DETAILS[reason],
            field="Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )
        self.reason: CredentialFailure = reason


def load_tokens(path: Path) -> dict[str, bytes]:
    """Read the tokens file (YAML mapping ``name: token``); raise ConfigError naming what is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read gateway tokens file {path}: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"gateway tokens file {path} must be a non-empty mapping name: token")
    tokens = {}
    for name, token in data.items():
        if not isinstance(token, str) or not token:
            raise ConfigError(f"gateway tokens file {path}: token for {name!r} must be a non-empty string")
        tokens[str(name)] = token.encode()
    return tokens


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
