"""TLS options from the settings, in the shapes uvicorn and redis-py take them.

PostgreSQL needs nothing here: asyncpg reads ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey`` from
the DSN (e.g. ``?sslmode=verify-full&sslrootcert=/etc/kubernaut/pg-ca.crt``).
"""

from __future__ import annotations

import ssl
from typing import Any

from kubernaut.config import HttpSettings, RedisTls


def uvicorn_options(http: HttpSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: none for plain HTTP."""
    tls = http.tls
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile)}
    if tls.client_ca_file is not None:
        options |= {"ssl_ca_certs": str(tls.client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def redis_options(tls: RedisTls | None) -> dict[str, Any]:
    """Keyword arguments for a redis-py client (and a Sentinel's connections): none without TLS."""
    if tls is None:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": None if tls.ca_file is None else str(tls.ca_file),
        "ssl_certfile": None if tls.certfile is None else str(tls.certfile),
        "ssl_keyfile": None if tls.keyfile is None else str(tls.keyfile),
        "ssl_check_hostname": tls.check_hostname,
    }
