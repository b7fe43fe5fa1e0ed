"""The guard of tests/conftest.py: a test not marked integration cannot open a real Kafka client, ClickHouse
client or broker. Each case makes the real call a unit test could make by mistake, on the path the product
takes. Without the guard the call would connect, or fail with the library's own error (nothing listens on
the port), so each case fails if the guard is gone or misses that entry point."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import free_port
from palaver.settings import Settings
from palaver.store.client import connect
from palaver.streams.clients import ensure_topics, make_consumer, make_producer
from tests.infrastructure_guard import RealInfrastructureInUnitTest

KAFKA = "a Kafka client (producer, consumer or admin)"
CHDB = "a chdb (embedded ClickHouse) connection"


def refused(what: str) -> str:
    """The guard's message for ``what``, naming the test (a regular expression)."""
    return rf"^tests/unit/test_infrastructure_guard\.py::\S+ opened {re.escape(what)} \(\S+\), but it is not marked integration\."


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose broker address has nothing listening, and whose chdb directory is this test's own."""
    return Settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")


@pytest.mark.parametrize("make", [
    lambda s: make_producer(s),
    lambda s: make_consumer(s, "stt", "transcripts"),
    lambda s: AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers),
    lambda s: AIOKafkaConsumer("transcripts", bootstrap_servers=s.bootstrap_servers),
    lambda s: AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers),
], ids=["make_producer", "make_consumer", "producer", "consumer", "admin"])  # fmt: skip
async def test_a_kafka_client_is_refused(make: Callable[[Settings], Any], settings: Settings) -> None:
    client = make(settings)
    try:
        with pytest.raises(RealInfrastructureInUnitTest, match=refused(KAFKA)):
            await client.start()
    finally:
        await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()


async def test_creating_topics_is_refused(settings: Settings) -> None:
    with pytest.raises(RealInfrastructureInUnitTest, match=refused(KAFKA)):
        await ensure_topics(settings)


def test_a_chdb_store_is_refused_through_the_wrapper_that_rewords_errors(settings: Settings) -> None:
    """``connect`` turns every Exception into StoreUnavailable: the guard's error passes through unchanged."""
    client = None
    try:
        with pytest.raises(RealInfrastructureInUnitTest, match=refused(CHDB)):
            client = connect(settings.clickhouse_dsn)
    finally:
        if client is not None:  # only without the guard: leave no chdb engine open in this process
            client.close()


def test_chdb_itself_is_refused() -> None:
    import chdb

    with pytest.raises(RealInfrastructureInUnitTest, match=refused(CHDB)):
        chdb.query("SELECT 1")


async def test_a_clickhouse_server_client_is_refused() -> None:
    import clickhouse_connect

    with pytest.raises(RealInfrastructureInUnitTest, match=refused("a ClickHouse server client")):
        connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RealInfrastructureInUnitTest, match=refused("an async ClickHouse client")):
        await clickhouse_connect.get_async_client(dsn=f"http://127.0.0.1:{free_port()}")


def test_the_embedded_broker_is_refused(tmp_path: Path) -> None:
    from palaver.broker import embedded

    try:
        with pytest.raises(RealInfrastructureInUnitTest, match=refused("the embedded Kafka broker")):
            embedded.start(tmp_path / "kafka", free_port())
    finally:
        embedded.stop(tmp_path / "kafka")  # reached with a broker only without the guard
