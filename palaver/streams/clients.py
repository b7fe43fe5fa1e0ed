"""Kafka clients configured the one way Palaver uses them: idempotent producers with acks=all,
consumers with auto-commit off (an offset is committed only after its results are durable). Every Kafka
client Palaver makes comes from here, so each carries the cluster's TLS and SASL settings
(``palaver.streams.kafka_security``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from palaver.events.registry import TopicSpec, all_topics, topic_name
from palaver.settings import Settings
from palaver.streams.kafka_security import client_security

log = logging.getLogger(__name__)


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    config: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": 1 << 20,
        **client_security(settings),
    }
    return AIOKafkaProducer(**{**config, **overrides})  # type: ignore[arg-type]


# partition, key, value (None: a tombstone), headers
Message = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]


async def send_batched(producer: AIOKafkaProducer, topic: str, messages: Sequence[Message]) -> list[asyncio.Future[Any]]:
    """Send messages whose partitions are known as one record batch per partition (more when one fills),
    in order within each partition. Returns the batches' delivery futures. For a high-rate sender this
    skips the per-message future and bookkeeping of ``producer.send``."""
    by_partition: dict[int, list[Message]] = {}
    for message in messages:
        by_partition.setdefault(message[0], []).append(message)
    deliveries = []
    for partition, group in by_partition.items():
        batch = producer.create_batch()
        for _, key, value, headers in group:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


def make_consumer(settings: Settings, group: str | None, *topics: str, **overrides: object) -> AIOKafkaConsumer:
    """``group`` None means a group-less reader (no commits), e.g. the API's live fan-out."""
    config: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "group_id": settings.group_id(group) if group else None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        **client_security(settings),
    }
    return AIOKafkaConsumer(*topics, **{**config, **overrides})  # type: ignore[arg-type]


def make_admin(settings: Settings, **overrides: object) -> AIOKafkaAdminClient:
    config: dict[str, object] = {"bootstrap_servers": settings.bootstrap_servers, **client_security(settings)}
    return AIOKafkaAdminClient(**{**config, **overrides})  # type: ignore[arg-type]


async def ensure_topics(settings: Settings, specs: Sequence[TopicSpec] | None = None) -> list[str]:
    """Create every registered topic (and DLQ), or those of ``specs``, that does not exist yet. Returns the
    names created."""
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                topic_name(settings.topic_namespace, spec.name),
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.kafka_config(),
            )
            for spec in (all_topics() if specs is None else specs)
            if topic_name(settings.topic_namespace, spec.name) not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()


async def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    """Return once the cluster answers metadata requests; raise TimeoutError otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = make_admin(settings, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (TimeoutError, KafkaConnectionError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka at {settings.bootstrap_servers} did not answer within {timeout_s:.0f}s: {last}")


def headers_dict(headers: object) -> dict[str, bytes]:
    return {k: v for k, v in (headers or ())}  # type: ignore[attr-defined]
