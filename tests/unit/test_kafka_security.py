"""The Kafka TLS and SASL settings reach every client Palaver makes, and nothing else makes one."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from palaver.settings import Settings
from palaver.streams.clients import make_admin, make_consumer, make_producer
from palaver.streams.kafka_security import KafkaSecurityError, client_security

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "kafka-pw-5e1d9c"


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate it signed, as PEM files."""
    root = tmp_path_factory.mktemp("kafka-tls")
    ca = trustme.CA()
    client = ca.issue_cert("palaver-client")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client.key"))
    return {"ca": root / "ca.pem", "cert": root / "client.pem", "key": root / "client.key"}


def secured(ca_files: dict[str, Path], **changes: Any) -> Settings:
    values: dict[str, Any] = dict(
        kafka_bootstrap="kafka-1:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="palaver", kafka_sasl_password=SecretStr(PASSWORD), kafka_ssl_cafile=ca_files["ca"],
        kafka_ssl_certfile=ca_files["cert"], kafka_ssl_keyfile=ca_files["key"],
    )  # fmt: skip
    return Settings(**{**values, **changes})


async def clients(settings: Settings) -> dict[str, Any]:
    """The low-level client of each kind of Kafka client (constructed, never started)."""
    return {
        "producer": make_producer(settings).client,
        "consumer": make_consumer(settings, "stt", "audio.frames")._client,
        "group-less consumer": make_consumer(settings, None)._client,
        "admin": make_admin(settings, request_timeout_ms=3000)._client,
    }


async def test_sasl_ssl_reaches_the_producer_consumers_and_admin(ca_files: dict[str, Path]) -> None:
    for kind, client in (await clients(secured(ca_files))).items():
        assert client._security_protocol == "SASL_SSL", kind
        assert client._sasl_mechanism == "SCRAM-SHA-512", kind
        assert (client._sasl_plain_username, client._sasl_plain_password) == ("palaver", PASSWORD), kind
        context: ssl.SSLContext = client._ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname, kind
        issuers = [dict(x[0] for x in cert["issuer"]) for cert in context.get_ca_certs()]
        assert any("Testing CA" in str(issuer) for issuer in issuers), (kind, issuers)


async def test_ssl_alone_and_sasl_over_plaintext(ca_files: dict[str, Path]) -> None:
    for client in (await clients(secured(ca_files, kafka_security_protocol="SSL"))).values():
        assert client._security_protocol == "SSL" and client._ssl_context is not None
        assert client._sasl_plain_username is None, "SSL alone sends no SASL credentials"
    plain = secured(ca_files, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN")
    for client in (await clients(plain)).values():
        assert client._security_protocol == "SASL_PLAINTEXT" and client._ssl_context is None
        assert (client._sasl_mechanism, client._sasl_plain_password) == ("PLAIN", PASSWORD)


async def test_plaintext_by_default_changes_nothing() -> None:
    assert client_security(Settings()) == {}
    for client in (await clients(Settings())).values():
        assert client._security_protocol == "PLAINTEXT" and client._ssl_context is None


def test_settings_that_cannot_work_are_named(ca_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="PALAVER_KAFKA_SASL_USERNAME and PALAVER_KAFKA_SASL_PASSWORD"):
        client_security(secured(ca_files, kafka_sasl_password=None))
    with pytest.raises(KafkaSecurityError, match="both PALAVER_KAFKA_SSL_CERTFILE and PALAVER_KAFKA_SSL_KEYFILE"):
        client_security(secured(ca_files, kafka_ssl_keyfile=None))
    with pytest.raises(KafkaSecurityError, match=r"PALAVER_KAFKA_SSL_CAFILE=.*missing.pem: no such file"):
        client_security(secured(ca_files, kafka_ssl_cafile=tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(KafkaSecurityError, match="cannot be loaded"):
        client_security(secured(ca_files, kafka_ssl_cafile=tmp_path / "junk.pem"))


def test_the_sasl_password_is_never_shown(ca_files: dict[str, Path]) -> None:
    settings = secured(ca_files)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


KAFKA_CLASSES = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def direct_constructions(path: Path) -> list[int]:
    """Lines where ``path`` calls an aiokafka client class itself."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in KAFKA_CLASSES:
                lines.append(node.lineno)
    return lines


def test_only_the_client_factory_makes_kafka_clients() -> None:
    """So every client carries the security settings: a new client made elsewhere fails this test."""
    made = {
        str(path.relative_to(ROOT)): lines
        for package in ("palaver", "stack", "ingest", "stt_workers", "merger", "enrichment", "api", "bench")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := direct_constructions(path))
    }
    assert set(made) == {"palaver/streams/clients.py"}, made
