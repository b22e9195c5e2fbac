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
from typing import Literal

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
