"""TLS on the hops that carry secrets (issue 13, item 10): the Alertmanager -> gateway webhook over HTTPS,
and a service's Redis connection over TLS, each with a CA and certificate made here with openssl."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from kubernaut.config import HttpSettings, RedisTls, StandaloneRedis
from kubernaut.redis import connect
from kubernaut.tls import redis_options, uvicorn_options
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.processes import ProcessRecord, is_alive, spawn, stop, wait_until
from tests.gateway.helpers import PROMETHEUS, alert, unique, webhook


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(name: str, cwd: Path) -> None:
    openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}"),
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    make_ca("ca", d)
    make_ca("other-ca", d)
    openssl(
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"),
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-out", "server.crt", "-days", "1", "-extfile", "san.ext"),
        cwd=d,
    )
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "other-ca.crt")


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture
def https_gateway(stack: LocalStack, certs: Certs) -> Iterator[str]:
    port = stack.topology.gateway_http + 120
    env = {
        **os.environ,
        "KUBERNAUT_GATEWAY__HTTP__PORT": str(port),
        "KUBERNAUT_GATEWAY__HTTP__TLS__CERTFILE": str(certs.cert),
        "KUBERNAUT_GATEWAY__HTTP__TLS__KEYFILE": str(certs.key),
    }
    argv = [sys.executable, "-m", "kubernaut", "gateway", "--config", str(stack.run.config_file)]
    rec = spawn("gateway-tls", argv, marker="-m kubernaut gateway", log=stack.run.log("gateway-tls"), env=env)
    url = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        if os.waitpid(rec.pid, os.WNOHANG)[0] == rec.pid:
            raise RuntimeError(f"gateway-tls exited: {stack.run.log('gateway-tls').read_text()[-1500:]}")
        try:
            return httpx.get(f"{url}/readyz", verify=trusting(certs.ca), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.2, what="the gateway on HTTPS")
        yield url
    finally:
        stop(rec, sig=signal.SIGTERM)


def test_the_gateway_takes_webhooks_over_https_only(
    stack: LocalStack, certs: Certs, https_gateway: str
) -> None:
    body = webhook(alert("TlsHop", namespace=unique("tls")))
    bearer = {"authorization": f"Bearer {stack.gateway_token}"}
    resp = httpx.post(
        https_gateway + PROMETHEUS, json=body, headers=bearer, verify=trusting(certs.ca), timeout=10
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["signals"][0]["outcome"] == "created"
    # A client that does not trust the CA does not talk to it; plain HTTP gets no answer.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(https_gateway + "/healthz", verify=trusting(certs.other_ca), timeout=5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_gateway.replace("https://", "http://") + "/healthz", timeout=5)


@pytest.fixture
def tls_redis(stack: LocalStack, certs: Certs, tmp_path: Path) -> Iterator[int]:
    port = stack.topology.redis_context_port + 120
    argv = [
        "/usr/bin/redis-server",
        *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)),
        *("--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key)),
        *("--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no"),
        *("--requirepass", "tls-test-password", "--save", "", "--appendonly", "no"),
    ]
    rec: ProcessRecord = spawn("redis-tls", argv, marker=str(port), log=tmp_path / "redis.log")
    opts = {"password": "tls-test-password", "ssl": True, "ssl_ca_certs": str(certs.ca), "socket_timeout": 1}

    def up() -> bool:
        if not is_alive(rec):
            raise RuntimeError((tmp_path / "redis.log").read_text()[-1500:])
        try:
            with redis.Redis(host="127.0.0.1", port=port, **opts) as r:  # type: ignore[arg-type]
                return bool(r.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.1, what="redis-server on TLS")
        yield port
    finally:
        stop(rec, sig=signal.SIGTERM)


async def test_a_service_reaches_its_redis_over_tls(certs: Certs, tls_redis: int) -> None:
    base = {"host": "127.0.0.1", "port": tls_redis, "password": "tls-test-password"}
    handle = connect(StandaloneRedis(**base, tls=RedisTls(ca_file=certs.ca)), client_name="tls-test")
    try:
        assert await handle.client.ping()
        assert handle.describe().startswith("rediss://")
    finally:
        await handle.aclose()
    for settings in (StandaloneRedis(**base), StandaloneRedis(**base, tls=RedisTls(ca_file=certs.other_ca))):
        handle = connect(settings, client_name="tls-test")
        try:
            with pytest.raises(redis.RedisError):
                await handle.client.ping()
        finally:
            await handle.aclose()


def test_plain_http_and_redis_take_no_tls_options() -> None:
    assert uvicorn_options(HttpSettings()) == {}
    assert redis_options(None) == {}


def test_a_client_ca_makes_the_listener_require_client_certificates(tmp_path: Path) -> None:
    tls = {"certfile": tmp_path / "c.pem", "keyfile": tmp_path / "k.pem"}
    one_way = uvicorn_options(HttpSettings(tls=tls))
    assert one_way == {"ssl_certfile": str(tmp_path / "c.pem"), "ssl_keyfile": str(tmp_path / "k.pem")}
    mutual = uvicorn_options(HttpSettings(tls={**tls, "client_ca_file": tmp_path / "ca.pem"}))
    assert mutual["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert mutual["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_redis_tls_always_verifies_the_server() -> None:
    options = redis_options(RedisTls())
    assert options["ssl"] is True
    assert options["ssl_cert_reqs"] == "required"
    assert options["ssl_ca_certs"] is None  # the system's trust store
    assert options["ssl_check_hostname"] is True
