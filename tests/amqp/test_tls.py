"""amqps:// with a throwaway CA, server and client certificate, on a node of this module."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from actorbus.brokers import QueueSpec, Topology
from actorbus.brokers.amqp import AmqpBroker
from actorbus.exceptions import BrokerConnectionError
from actorbus.testing._conformance import DeliveryCollector, make_message
from actorbus.testing._rabbitmq import RabbitMQNode, find_rabbitmq_server

x509 = pytest.importorskip("cryptography.x509")
hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
NameOID = x509.oid.NameOID

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(find_rabbitmq_server() is None, reason="needs rabbitmq-server"),
]


def _write_key(key: object, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    name: str,
    issuer_key: object,
    issuer_name: object,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[object, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _pem(cert: object, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for localhost and a client certificate, as PEM files."""
    root = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _issue("actorbus test CA", None, None, ca=True)
    ca_name = ca_cert.subject  # type: ignore[attr-defined]
    server_key, server_cert = _issue("localhost", ca_key, ca_name, server=True)
    client_key, client_cert = _issue("actorbus client", ca_key, ca_name)
    _other_key, other_ca = _issue("some other CA", None, None, ca=True)
    files = {}
    for label, obj in {
        "ca": ca_cert,
        "server_cert": server_cert,
        "client_cert": client_cert,
        "other_ca": other_ca,
    }.items():
        _pem(obj, root / f"{label}.pem")
        files[label] = str(root / f"{label}.pem")
    for label, key in {"server_key": server_key, "client_key": client_key}.items():
        _write_key(key, root / f"{label}.pem")
        files[label] = str(root / f"{label}.pem")
    return files


@pytest.fixture(scope="module")
def tls_node(certs: dict[str, str]) -> Iterator[RabbitMQNode]:
    """A node with a TLS listener using the test CA's server certificate."""
    tls = (certs["ca"], certs["server_cert"], certs["server_key"])
    with RabbitMQNode(name="actorbus-tls", tls=tls) as node:
        yield node


async def test_amqps_with_ca_and_client_certificate(
    tls_node: RabbitMQNode, certs: dict[str, str], unique: str
) -> None:
    url = (
        f"{tls_node.tls_url}?cafile={certs['ca']}"
        f"&certfile={certs['client_cert']}&keyfile={certs['client_key']}"
    )
    async with AmqpBroker(url) as broker:
        assert broker.url.startswith("amqps://guest:***@")
        spec = QueueSpec(f"{unique}.q", retry_delays=())
        await broker.declare(Topology(queues=(spec,)))
        collector = DeliveryCollector()
        await broker.consume(spec.name, collector, prefetch=1)
        await broker.publish(make_message("", spec.name, b"over tls"))
        (delivery,) = await collector.wait_for(1)
        assert delivery.body == b"over tls"
        await delivery.ack()


async def test_amqps_constructor_options(tls_node: RabbitMQNode, certs: dict[str, str]) -> None:
    async with AmqpBroker(tls_node.tls_url, cafile=certs["ca"]) as broker:
        assert broker.is_ready


async def test_amqps_rejects_an_unknown_ca(tls_node: RabbitMQNode, certs: dict[str, str]) -> None:
    with pytest.raises(BrokerConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        async with AmqpBroker(tls_node.tls_url, cafile=certs["other_ca"], connect_timeout=5):
            pass  # pragma: no cover
    assert "guest:guest" not in str(caught.value)
