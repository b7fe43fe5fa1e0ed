"""Dead-lettering of bad *messages* (never of a bad environment), with provenance headers and a limit:
after too many consecutive bad messages the consumer stops instead of dead-lettering everything."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import TopicSpec, topic_name
from palaver.metrics import DLQ_MESSAGES
from palaver.settings import Settings

log = logging.getLogger(__name__)


class DlqLimitExceeded(RuntimeError):
    """Too many consecutive invalid messages: likely a bad deploy or a wrong topic, not bad data."""


class DlqPolicy:
    def __init__(
        self, producer: AIOKafkaProducer, dlq_by_topic: dict[str, str], service: str, max_consecutive: int = 100
    ):
        self._producer = producer
        self._dlq_by_topic = dlq_by_topic
        self._service = service
        self._max_consecutive = max_consecutive
        self._consecutive = 0

    def ok(self) -> None:
        self._consecutive = 0

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        self._consecutive += 1
        if self._consecutive > self._max_consecutive:
            raise DlqLimitExceeded(f"{self._consecutive} consecutive invalid messages on {record.topic}")
        headers = [
            *(record.headers or ()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.reason", reason[:1000].encode()),
            ("dlq.service", self._service.encode()),
        ]
        await self._producer.send_and_wait(self._dlq_by_topic[record.topic], record.value, key=record.key, headers=headers)
        DLQ_MESSAGES.labels(service=self._service, topic=record.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason)


def dlq_topics(settings: Settings, *specs: TopicSpec) -> dict[str, str]:
    """Source topic name -> its dead-letter topic name, in the settings' namespace."""
    ns = settings.topic_namespace
    return {topic_name(ns, s.name): topic_name(ns, s.dlq) for s in specs if s.dlq}
