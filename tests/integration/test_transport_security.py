"""Transport security on a real broker: a second Kafka whose only client listener demands TLS and
SASL/SCRAM-SHA-512 (certificates made here, the user added at format time). The archive, given
the `KAFKA_SECURITY_PROTOCOL`... variables of deploy/SECURITY.md, consumes from it; a client
without TLS or with a wrong password is refused."""

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stackutil import (
    ROOT,
    ServiceProcess,
    Stack,
    eventually,
    free_port,
    local_stack,
    order_placed,
    unique,
)

USER, PASSWORD = "crm-archive", "archive-s3cret"


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    ca_file: Path

    def options(self, password: str = PASSWORD) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": USER,
            "sasl_plain_password": password,
            "ssl_context": ssl.create_default_context(cafile=str(self.ca_file)),
        }


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1: (broker key+chain PEM, CA PEM)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("crm test CA"))
        .issuer_name(_name("crm test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    keystore, truststore = folder / "broker.pem", folder / "ca.pem"
    pem = serialization.Encoding.PEM
    keystore.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + broker.public_bytes(pem)
        + ca.public_bytes(pem)
    )
    truststore.write_bytes(ca.public_bytes(pem))
    return keystore, truststore


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    base = tmp_path_factory.mktemp("secure-kafka")
    keystore, truststore = make_certificates(base / "tls")
    port = free_port()
    node = local_stack.KafkaNode(
        base / "kafka",
        port,
        free_port(),
        template=ROOT / "deploy" / "local" / "kafka" / "server-sasl-ssl.properties.template",
        values={
            "internal_port": str(free_port()),
            "keystore": str(keystore),
            "truststore": str(truststore),
        },
        format_args=("--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"),
    )
    secure = SecureKafka(node.bootstrap, truststore)
    node.client_options = secure.options()
    proc = node.start()
    try:
        local_stack.provision_topics(node.bootstrap, **secure.options())
        yield secure
    finally:
        local_stack.stop_pid(proc.pid, timeout=30)
        proc.wait(10)


async def produce_securely(secure: SecureKafka, customer: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=secure.bootstrap, **secure.options())
    await producer.start()
    try:
        value = order_placed(customer, unique("o"), "66.00")
        await producer.send_and_wait("orders.v1", value, key=customer.encode())
    finally:
        await producer.stop()


def test_the_archive_consumes_over_tls_with_scram_credentials(
    stack: Stack, secure_kafka: SecureKafka
) -> None:
    archive = ServiceProcess.isolated("archive", stack)
    archive.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": secure_kafka.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": PASSWORD,
            "KAFKA_SSL_CAFILE": str(secure_kafka.ca_file),
        }
    )
    archive.start()
    try:
        customer = unique("tls")
        asyncio.run(produce_securely(secure_kafka, customer))
        record = eventually(
            lambda: (r := archive.get(f"/customers/{customer}")).status_code == 200 and r.json(),
            timeout=60,
        )
        assert record["value"]["order_count"] == 1
        assert archive.get("/readyz").json()["ready"]
        assert PASSWORD not in archive.log.read_text(errors="replace")
    finally:
        archive.stop()


async def admin_can_connect(bootstrap: str, **options: Any) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await admin.start()
        await admin.describe_cluster()
        return "connected"
    except Exception as exc:
        return type(exc).__name__
    finally:
        await admin.close()


def test_a_wrong_password_or_no_tls_is_refused(secure_kafka: SecureKafka) -> None:
    assert asyncio.run(admin_can_connect(secure_kafka.bootstrap, **secure_kafka.options())) == (
        "connected"
    )
    wrong = secure_kafka.options(password="guess")
    assert asyncio.run(admin_can_connect(secure_kafka.bootstrap, **wrong)) != "connected"
    assert asyncio.run(admin_can_connect(secure_kafka.bootstrap)) != "connected"
