"""Palaver's Kafka clients against a broker that demands SASL/PLAIN: an embedded broker started here with
a SASL_PLAINTEXT listener beside its plain one. With the right credentials the admin client creates the
topics and a record goes through a producer and a consumer; with a wrong password nothing connects, and
the password is in no error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from palaver.broker import embedded
from palaver.events.registry import CHAT, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_consumer, make_producer, wait_for_broker
from tests.integration.infra import free_port

pytestmark = pytest.mark.integration

PASSWORD = "sasl-pw-0b7e4a"


@pytest.fixture(scope="module")
def sasl_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An embedded broker whose extra listener on the returned port takes SASL/PLAIN (user ``palaver``)."""
    root: Path = tmp_path_factory.mktemp("sasl-broker") / "kafka"
    port, sasl = free_port(), free_port()
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'user_palaver="{PASSWORD}";')  # fmt: skip
    extra = [
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},SASL://127.0.0.1:{sasl}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL://127.0.0.1:{sasl}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl.plain.sasl.jaas.config={jaas}",
    ]
    embedded.start(root, port, extra=extra)
    try:
        yield sasl
    finally:
        embedded.stop(root)


def sasl_settings(port: int, password: str, namespace: str) -> Settings:
    return Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_replication_factor=1, topic_namespace=namespace,
                    kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                    kafka_sasl_username="palaver", kafka_sasl_password=SecretStr(password))  # fmt: skip


async def test_the_clients_authenticate_with_sasl_plain(sasl_port: int) -> None:
    settings = sasl_settings(sasl_port, PASSWORD, f"sasl-{uuid.uuid4().hex[:8]}")
    await wait_for_broker(settings, timeout_s=60)
    assert topic_name(settings.topic_namespace, CHAT.name) in await ensure_topics(settings, [CHAT])
    topic = topic_name(settings.topic_namespace, CHAT.name)
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over sasl", key=b"m1", partition=0)
    finally:
        await producer.stop()
    consumer = make_consumer(settings, "sasl-test", topic)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        assert [r.value for records in batch.values() for r in records] == [b"over sasl"]
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused_without_showing_it(sasl_port: int, caplog: pytest.LogCaptureFixture) -> None:
    settings = sasl_settings(sasl_port, "not-the-password-9d", "sasl-wrong")
    with pytest.raises((KafkaError, TimeoutError, OSError)) as refused:
        await wait_for_broker(settings, timeout_s=8)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Authentication failed" in logged, logged  # refused for the password, not for anything else
    assert "not-the-password-9d" not in str(refused.value) + logged
