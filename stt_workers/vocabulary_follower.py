"""What the STT worker knows of each meeting's vocabulary: the compacted ``meeting.vocabulary`` topic, folded.

Every worker reads the whole topic from its beginning and keeps following it, without a consumer group
(any worker may own any meeting's streams; a vocabulary is a few dozen words). ``VocabularyFollower.start``
returns once the topic is read to the end it had when the worker started, so the first decodes already
have the vocabularies set before then; later changes (a glossary patched, someone joining) reach the
decodes asked for after the worker reads them. ``Vocabularies`` is the fold, pure: per meeting the
newest vocabulary by ``vocabulary_version``, a tombstone (an erased meeting) forgets it, and an unreadable
record is skipped (a reader without a group has no dead-letter topic; it logs and goes on).

``palaver replay`` reads the topic once (``meeting_vocabulary``) and decodes the whole replay with the
meeting's newest vocabulary, so runs of one meeting made at different times compare.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import DecodeError, decode_on
from palaver.events.meeting_vocabulary_v1 import MeetingVocabularyV1
from palaver.events.registry import MEETING_VOCABULARY, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from palaver.streams.topic_reader import read_topic
from stt_workers.vocabulary import vocabulary_terms

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S = 30.0  # a start that cannot read the topic to its end by then goes on without the rest

# (meeting id, its vocabulary terms): [] when the meeting has none any more
OnChange = Callable[[str, list[str]], None]


def meeting_terms(event: MeetingVocabularyV1) -> list[str]:
    """The vocabulary's terms in the decoder's order: names, glossary, title, agenda items."""
    return vocabulary_terms(names=event.names, glossary=event.glossary, title=event.title, agenda=event.agenda)


class Vocabularies:
    """Meeting -> its newest ``MeetingVocabularyV1``, folded from the topic's records in any order."""

    def __init__(self) -> None:
        self.events: dict[str, MeetingVocabularyV1] = {}

    def apply(self, meeting_id: str, value: bytes | None) -> list[str] | None:
        """Fold one record of the meeting's key. Returns the meeting's terms when they changed ([] when it
        has none any more: a tombstone), None when the record changed nothing (an older version, or an
        unreadable record, which is logged and skipped)."""
        before = self.events.get(meeting_id)
        if value is None:
            self.events.pop(meeting_id, None)
            return [] if before is not None else None
        try:
            event = decode_on(MEETING_VOCABULARY, value)
        except DecodeError as exc:
            log.warning("meeting.vocabulary: skipped an unreadable record of %s: %s", meeting_id, exc)
            return None
        if not isinstance(event, MeetingVocabularyV1) or event.meeting_id != meeting_id:
            log.warning("meeting.vocabulary: skipped a record of %s that is not its vocabulary", meeting_id)
            return None
        if before is not None and before.vocabulary_version > event.vocabulary_version:
            return None
        self.events[meeting_id] = event
        terms = meeting_terms(event)
        return terms if before is None or meeting_terms(before) != terms else None

    def terms(self, meeting_id: str) -> list[str]:
        event = self.events.get(meeting_id)
        return meeting_terms(event) if event is not None else []


def _meeting_of(record: ConsumerRecord) -> str | None:
    return record.key.decode(errors="replace") if record.key else None


async def meeting_vocabulary(settings: Settings, meeting_id: str) -> list[str]:
    """The meeting's vocabulary terms as the topic holds them now ([] for none): one read of the topic."""
    vocabularies = Vocabularies()

    def take(record: ConsumerRecord) -> None:
        if _meeting_of(record) == meeting_id:
            vocabularies.apply(meeting_id, record.value)

    await read_topic(settings, MEETING_VOCABULARY, None, take)
    return vocabularies.terms(meeting_id)


class VocabularyFollower:
    """Follows the topic and tells ``on_change`` every meeting whose vocabulary changes (first, every
    meeting the topic holds a vocabulary of)."""

    def __init__(self, settings: Settings, on_change: OnChange,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``consumer_factory`` takes ``make_consumer``'s arguments (tests pass an in-memory broker's)."""
        self._settings = settings
        self._on_change = on_change
        self._consumer_factory = consumer_factory
        self.topic = topic_name(settings.topic_namespace, MEETING_VOCABULARY.name)
        self.vocabularies = Vocabularies()
        self._following: asyncio.Task[None] | None = None
        self._caught_up = False  # past the end the topic had at the start: each change is logged

    async def start(self) -> None:
        """Read the topic from its beginning up to its end as it is now (at most ``CATCH_UP_TIMEOUT_S``),
        then keep following it in a task of its own."""
        consumer = self._consumer_factory(self._settings, None)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(MEETING_VOCABULARY.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            await asyncio.wait_for(self._catch_up(consumer, ends), CATCH_UP_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s: not read to its end in %.0f s; following it from here", self.topic, CATCH_UP_TIMEOUT_S)
        except BaseException:
            await consumer.stop()
            raise
        self._caught_up = True
        log.info("%s: read to its end, %d meetings' vocabularies", self.topic, len(self.vocabularies.events))
        self._following = asyncio.create_task(self._follow(consumer), name="meeting vocabularies")

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None

    async def _catch_up(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        behind = [tp for tp, end in ends.items() if end > 0]
        while behind:
            await self._read(consumer)
            behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                await self._read(consumer)
        except asyncio.CancelledError:
            raise
        except Exception:  # the worker goes on with the vocabularies it has
            log.exception("following %s failed", self.topic)
            raise
        finally:
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        for records in batches.values():
            for record in records:
                meeting_id = _meeting_of(record)
                changed = self.vocabularies.apply(meeting_id, record.value) if meeting_id else None
                if meeting_id and changed is not None:
                    self._on_change(meeting_id, changed)
                    if self._caught_up:
                        log.info("vocabulary of %s: %d terms", meeting_id, len(changed))
