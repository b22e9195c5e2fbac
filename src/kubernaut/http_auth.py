"""Bearer-token checks shared by both services (no service-specific types: each maps a
:class:`CredentialError` to its own 401 answer).

Only what HTTP itself allows around a header value is stripped (SP and HTAB, RFC 9110 5.5): Python's
``str.strip()`` would also take U+00A0 or U+0085 (bytes 0xA0 / 0x85 decoded as Latin-1) off a token.
A request carrying more than one ``Authorization`` header is refused: which one a proxy or a framework
reads differs, so accepting either lets a wrong credential ride along a right one.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml

from kubernaut.config import ConfigError

CredentialFailure = Literal["missing", "invalid", "duplicate"]
_HTTP_WHITESPACE = " \t"


class CredentialError(Exception):
    """A bearer credential refused; ``reason`` says why (missing, invalid, or given twice)."""

    def __init__(self, reason: CredentialFailure) -> None:
        super().__init__(reason)
        self.reason: CredentialFailure = reason


def presented_token(authorization: Sequence[str]) -> bytes:
    """The bearer token of a request's ``Authorization`` header values (as decoded from Latin-1, e.g.
    Starlette's ``request.headers.getlist("authorization")``), as the bytes the client sent."""
    if len(authorization) > 1:
        raise CredentialError("duplicate")
    if not authorization:
        raise CredentialError("missing")
    scheme, _, rest = authorization[0].strip(_HTTP_WHITESPACE).partition(" ")
    token = rest.strip(_HTTP_WHITESPACE)
    if scheme.lower() != "bearer" or not token:
        raise CredentialError("missing")
    return token.encode("latin-1")


def match_token(presented: bytes, tokens: Iterable[tuple[str, bytes]]) -> str:
    """The name of the token equal to ``presented``; every token is compared, each in constant time."""
    found = None
    for name, token in tokens:
        if hmac.compare_digest(presented, token):
            found = name
    if found is None:
        raise CredentialError("invalid")
    return found


def read_tokens_file(path: Path, where: str, shape: str) -> dict[object, object]:
    """The tokens file's top-level mapping; ConfigError naming ``where`` (and the expected ``shape``)
    when it cannot be read or is not a non-empty mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {where}: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where} must be a non-empty mapping {shape}")
    return data


def configured_token(value: object, where: str, name: object) -> bytes:
    """A token from a tokens file: a non-empty string without SP/HTAB around it (a request's token is
    read without them, so such a token could never match)."""
    if not isinstance(value, str) or not value or value.strip(_HTTP_WHITESPACE) != value:
        raise ConfigError(f"{where}: token of {name!r} must be a non-empty string without blanks")
    return value.encode()
