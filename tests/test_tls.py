"""``rediss://``: the gateway on a redis-server that speaks only TLS, its certificate checked."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.api import Api
from tests.helpers.apps import close_apps, open_app
from tests.helpers.polling import wait_until
from tests.helpers.ports import free_ports
from tests.helpers.settings import API_KEY, settings_for_tests
from tests.helpers.stores import redis_binary
from tests.topology import server_args

pytestmark = [pytest.mark.real_redis, pytest.mark.topology]


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_apps()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authgw test store")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "store.crt", folder / "store.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = redis_binary("TLS tests")
    cert, key = _self_signed(tmp_path)
    (port,) = free_ports(1)
    password = secrets.token_hex(16)
    process = subprocess.Popen(
        server_args(
            binary,
            0,  # no plain port: TLS only
            tmp_path,
            password,
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(cert))}"

    def answers() -> bool:
        try:
            with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as c:
                return bool(c.ping())
        except redis.exceptions.RedisError:
            return False

    try:
        wait_until("the TLS store answering", answers, 20)
        yield url, cert
    finally:
        process.terminate()
        process.wait(10)


def test_the_gateway_works_over_tls(tls_store: tuple[str, Any]) -> None:
    url, _cert = tls_store
    app = open_app(settings_for_tests(redis_url=url, redis_timeout=2))
    api = Api(app.test_client(), API_KEY)
    assert api.put("/v1/customers/cust-001", {"phones": ["090-1234-5678"]}).status_code == 200
    assert api.get("/v1/customers/cust-001").get_json()["phones"] == ["+819012345678"]
    assert app.test_client().get("/readyz").status_code == 200


def test_a_store_whose_certificate_is_not_trusted_fails_closed(tls_store: tuple[str, Any]) -> None:
    url, _cert = tls_store
    untrusted = url.split("?", 1)[0]  # the system's CAs only: the self-signed cert is refused
    app = open_app(settings_for_tests(redis_url=untrusted, redis_timeout=1))
    rv = Api(app.test_client(), API_KEY).get("/v1/customers/cust-001")
    assert rv.status_code == 503 and rv.get_json()["code"] == "store_unavailable"
    assert app.test_client().get("/readyz").status_code == 503
