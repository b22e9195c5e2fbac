"""The page's token check: one function, so it can point at the Context-API's bearer auth.

Until that lands, the accepted token is the one in the file named by ``$KUBERNAUT_CONTEXT_API_TOKEN_FILE``
(the local stack writes ``secrets/context-api-token``). Without it every token is refused: nothing opens
the page without a key."""

from __future__ import annotations

import hmac
import os
from functools import cache
from pathlib import Path

TOKEN_FILE_ENV = "KUBERNAUT_CONTEXT_API_TOKEN_FILE"
COOKIE = "kubernaut_ui"


@cache
def _expected() -> str | None:
    path = os.environ.get(TOKEN_FILE_ENV)
    if not path:
        return None
    token = Path(path).read_text().strip()
    return token or None


def token_valid(token: str | None) -> bool:
    expected = _expected()
    if not token or expected is None:
        return False
    return hmac.compare_digest(token.encode(), expected.encode())
