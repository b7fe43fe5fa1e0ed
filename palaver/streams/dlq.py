"""Dead-lettering of bad *messages* (never of a bad environment), with provenance headers and limits:
when too many messages are bad (in a row, or as a share of the recent ones) the consumer stops instead
of dead-lettering a whole topic after a bad deploy.

A consumer calls ``ok()`` for every message it processed and ``await dead_letter(record, error)`` for
every message whose processing failed because of the message; after either, it may commit the offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import TopicSpec, topic_name
from palaver.metrics import DLQ_MESSAGES
from palaver.settings import Settings
from palaver.streams.dlq_limits import DlqLimitExceeded, DlqLimits, DlqLimitState
from palaver.streams.dlq_records import dead_letter_headers, describe_error

__all__ = ["DlqLimitExceeded", "DlqLimits", "DlqPolicy", "dlq_limits", "dlq_policy", "dlq_topics"]

log = logging.getLogger(__name__)


class DlqPolicy:
    """Sends bad records to their topic's dead-letter topic, within ``limits``.

    ``dlq_by_topic`` maps each consumed topic (full name) to its DLQ (``dlq_topics``); ``service`` names
    the consumer in the provenance. One policy per consumer: the limits count that consumer's messages.
    """

    def __init__(self, producer: AIOKafkaProducer, dlq_by_topic: dict[str, str], service: str,
                 limits: DlqLimits | None = None, clock: Callable[[], float] = time.time):  # fmt: skip
        self._producer = producer
        self._dlq_by_topic = dlq_by_topic
        self._service = service
        self._limits = DlqLimitState(limits or DlqLimits())
        self._clock = clock

    def ok(self) -> None:
        """One more message processed: it ends a run of bad ones and counts in the ratio's window."""
        self._limits.record_valid()

    async def dead_letter(
        self, record: ConsumerRecord, error: BaseException | str, error_class: str | None = None
    ) -> None:
        """Produce ``record`` (key, value and headers unchanged, ``dlq.*`` provenance headers added) to its
        topic's DLQ and return once the broker acknowledged it, so the caller may commit its offset.

        ``error``: the exception (its class is recorded) or a text; ``error_class`` names the class of a
        text error (default ``InvalidMessage``) or overrides an exception's.
        Raises ``DlqLimitExceeded`` *instead of* producing when this record would cross a limit: the caller
        must stop without committing it. Raises ``KeyError`` for a topic this policy has no DLQ for.
        Broker errors propagate (a bad environment is never dead-lettered)."""
        dlq = self._dlq_by_topic[record.topic]
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        cls, message = describe_error(error, error_class)
        try:
            self._limits.admit_invalid()
        except DlqLimitExceeded as exc:
            log.error(
                "%s stops: %s; %s (%s: %s) was not dead-lettered", self._service, exc, where, cls, message
            )
            raise DlqLimitExceeded(f"{self._service} stopped at {where} ({cls}: {message}): {exc}") from (
                error if isinstance(error, BaseException) else None
            )
        headers = dead_letter_headers(record.headers or (), record.topic, record.partition, record.offset, cls,
                                      message, self._service, self._clock())  # fmt: skip
        await self._producer.send_and_wait(dlq, record.value, key=record.key, headers=headers)
        DLQ_MESSAGES.labels(service=self._service, topic=record.topic).inc()
        log.warning("dead-lettered %s to %s: %s: %s", where, dlq, cls, message)


def dlq_topics(settings: Settings, *specs: TopicSpec) -> dict[str, str]:
    """Source topic name -> its dead-letter topic name, in the settings' namespace."""
    ns = settings.topic_namespace
    return {topic_name(ns, s.name): topic_name(ns, s.dlq) for s in specs if s.dlq}


def dlq_limits(settings: Settings) -> DlqLimits:
    return DlqLimits(
        max_consecutive=settings.dlq_max_consecutive,
        max_ratio=settings.dlq_max_ratio,
        window=settings.dlq_window,
        min_invalid=settings.dlq_min_invalid,
    )


def dlq_policy(producer: AIOKafkaProducer, settings: Settings, service: str, *specs: TopicSpec) -> DlqPolicy:
    """The policy of a ``service`` consuming ``specs``, with the settings' namespace and limits."""
    return DlqPolicy(producer, dlq_topics(settings, *specs), service, dlq_limits(settings))
