"""tls:// to a nats-server with a throwaway CA, and credentials that never show.

The server (on free loopback ports) presents a certificate of a CA made here; the client
trusts that CA through ``?tls_ca=FILE`` and logs in with ``user:password@``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from actorbus.brokers import QueueSpec, Topology, connect
from actorbus.exceptions import BrokerConnectionError
from actorbus.testing import NatsServer, find_nats_server
from actorbus.testing._conformance import DeliveryCollector, make_message

x509 = pytest.importorskip("cryptography.x509")
hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
NameOID = x509.oid.NameOID

pytestmark = [
    pytest.mark.nats,
    pytest.mark.anyio,
    pytest.mark.skipif(find_nats_server() is None, reason="needs nats-server"),
]

USER, PASSWORD = "bob", "hunter2-s3cret"


def _issue(name: str, issuer: tuple[Any, Any] | None, *, server: bool = False) -> tuple[Any, Any]:
    """Return (key, certificate) for ``name``, signed by ``issuer`` or self-signed (a CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA (PEM)."""
    root = tmp_path_factory.mktemp("nats-tls")
    ca = _issue("actorbus NATS test CA", None)
    server_key, server_cert = _issue("127.0.0.1", ca, server=True)
    _other_key, other_ca = _issue("some other CA", None)
    files = {
        "ca": (ca[1], root / "ca.pem"),
        "other_ca": (other_ca, root / "other-ca.pem"),
        "server_cert": (server_cert, root / "server.pem"),
    }
    for cert, path in files.values():
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = root / "server-key.pem"
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {**{label: path for label, (_, path) in files.items()}, "server_key": key_path}


class TlsNatsServer(NatsServer):
    """A throwaway nats-server -js that only speaks TLS and wants a user and password."""

    def __init__(self, certs: dict[str, Path]) -> None:
        self._certs = certs
        super().__init__(name="actorbus-tls")

    def _write_config(self) -> Path:
        path = super()._write_config()
        cert, key = (
            json.dumps(str(self._certs["server_cert"])),
            json.dumps(str(self._certs["server_key"])),
        )
        with path.open("a") as config:
            config.write(f"tls {{ cert_file: {cert}, key_file: {key}, timeout: 2 }}\n")
            config.write(
                f"authorization {{ user: {json.dumps(USER)}, password: {json.dumps(PASSWORD)} }}\n"
            )
        return path


@pytest.fixture(scope="module")
def tls_server(certs: dict[str, Path]) -> Iterator[TlsNatsServer]:
    with TlsNatsServer(certs) as server:
        yield server


def _url(server: NatsServer, ca: Path, password: str = PASSWORD) -> str:
    return f"tls://{USER}:{password}@127.0.0.1:{server.port}?tls_ca={ca}&connect_timeout=2"


async def test_publish_and_consume_over_tls_with_the_ca_of_the_url(
    tls_server: TlsNatsServer, certs: dict[str, Path]
) -> None:
    url = _url(tls_server, certs["ca"])
    with structlog.testing.capture_logs() as logs:
        broker = connect(url)
        async with broker:
            assert broker.is_ready
            await broker.declare(Topology(queues=(QueueSpec("tls.queue"),)))
            await broker.publish(make_message("", "tls.queue", b"over tls"))
            collector = DeliveryCollector()
            sub = await broker.consume("tls.queue", collector, prefetch=1)
            (delivery,) = await collector.wait_for(1)
            assert delivery.body == b"over tls"
            await delivery.ack()
            await sub.cancel()
            shown = [broker.url, repr(broker)]
    assert broker.url == (
        f"tls://{USER}:***@127.0.0.1:{tls_server.port}?tls_ca={certs['ca']}&connect_timeout=2"
    )
    assert any(entry["event"] == "nats_connected" for entry in logs)
    text = json.dumps([*shown, logs], default=str)
    assert PASSWORD not in text
    assert f"{USER}:***@" in text


async def test_a_server_certificate_of_another_ca_is_refused(
    tls_server: TlsNatsServer, certs: dict[str, Path]
) -> None:
    # nats-py hangs for ever after a failed handshake (nats.py #718): the broker must not.
    with (
        anyio.fail_after(10),
        structlog.testing.capture_logs() as logs,
        pytest.raises(BrokerConnectionError, match="CERTIFICATE_VERIFY_FAILED") as info,
    ):
        async with connect(_url(tls_server, certs["other_ca"])):
            pass
    assert f"tls://{USER}:***@127.0.0.1:{tls_server.port}" in str(info.value)
    assert PASSWORD not in json.dumps([str(info.value), logs], default=str)


async def test_a_wrong_password_is_refused_without_showing_it(
    tls_server: TlsNatsServer, certs: dict[str, Path]
) -> None:
    wrong = "not-the-password-42"
    with (
        anyio.fail_after(20),
        structlog.testing.capture_logs() as logs,
        pytest.raises(BrokerConnectionError, match="Authorization Violation") as info,
    ):
        async with connect(_url(tls_server, certs["ca"], password=wrong)):
            pass
    text = json.dumps([str(info.value), repr(info.value), logs], default=str)
    assert "check the user and password" in str(info.value)
    assert wrong not in text
    assert PASSWORD not in text
