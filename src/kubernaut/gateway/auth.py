"""Bearer-token authentication. Each token has a name; the name is the source for rate limiting."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Literal

import yaml

from kubernaut.config import ConfigError
from kubernaut.gateway.problems import Problem

FailureReason = Literal["missing", "invalid"]


class AuthFailure(Problem):
    def __init__(self, reason: FailureReason) -> None:
        detail = "an Authorization: Bearer token is required" if reason == "missing" else "unknown token"
        super().__init__(
            401,
            "unauthorized",
            "Unauthorized",
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )
        self.reason: FailureReason = reason


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
    def __init__(self, tokens: dict[str, bytes]) -> None:
        self._tokens = list(tokens.items())

    def identify(self, authorization: str | None) -> str:
        """The token's name; raise AuthFailure. Every token is compared, in constant time each."""
        if not authorization:
            raise AuthFailure("missing")
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise AuthFailure("missing")
        candidate = presented.strip().encode()
        found = None
        for name, token in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = name
        if found is None:
            raise AuthFailure("invalid")
        return found
