"""Erasing a meeting: ``purge_meeting``, the one purge behind ``DELETE /v1/meetings/{m}`` (the API's
producer and store) and ``palaver admin purge-meeting`` (its own).

In order:

1. publish the meeting's ``deleted`` state on the ``meetings`` topic (``change="deleted"``, no title, no
   agenda, no glossary, no schedule): compaction keeps this content-free marker under the meeting's key forever, so
   its id stays known as purged (the API answers 404), and store it at once, so the store writer and a
   replay know it before the writer has caught up (``palaver.store.erasure.is_purged``);
2. publish a tombstone for every member and link key of the meeting on ``meetings`` and for its key on
   ``merger.state``, ``enrichment.state``, ``ingest.timelines`` and ``meeting.vocabulary``: the compacted
   topics that hold the
   meeting (``COMPACTED_KEYS``);
3. delete the meeting's rows from every ClickHouse table holding meeting data but the marker, returning
   once they are gone.

A purge is safe to repeat: a second one finishes what an interrupted first left. It does not reach what
the delete-policy topics keep (``audio.frames`` until its retention, ``transcripts``, ``dialogues``,
``edits``, ``chat`` forever): docs/architecture.md, "Erasure".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from palaver import ids
from palaver.events import MeetingChangedV1, decode_on, encode
from palaver.events.registry import (
    ENRICHMENT_STATE,
    INGEST_TIMELINES,
    MEETING_VOCABULARY,
    MEETINGS,
    MERGER_STATE,
    TopicSpec,
    meeting_partition,
    topic_name,
)
from palaver.settings import Settings
from palaver.store.client import Store
from palaver.store.erasure import delete_meeting_rows
from palaver.store.rows import COLUMNS, Provenance, rows_for
from palaver.streams.clients import make_consumer

# The compacted topics that hold a meeting, and which of their keys are its: a test checks that every
# compacted topic of the registry keyed by meeting is here.
COMPACTED_KEYS: dict[str, str] = {
    MEETINGS.name: "<meeting_id>, <meeting_id>/member/<user_id>, <meeting_id>/link/<link_id>",
    MERGER_STATE.name: "<meeting_id>",
    ENRICHMENT_STATE.name: "<meeting_id>",
    INGEST_TIMELINES.name: "<meeting_id>",
    MEETING_VOCABULARY.name: "<meeting_id>",
}


class NoSuchMeeting(LookupError):
    """The ``meetings`` topic has never held the meeting: there is nothing to purge."""


@dataclass(frozen=True)
class PurgeReport:
    meeting_id: str
    marker: MeetingChangedV1  # the meeting's state from now on
    tombstones: dict[str, list[str]]  # topic (unprefixed) -> keys tombstoned
    rows_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows


async def meeting_entities(settings: Settings, meeting_id: str) -> dict[str, bytes | None]:
    """Key -> newest value (None: a tombstone) of every key of ``meeting_id`` on the ``meetings`` topic,
    read from the meeting's partition to its end."""
    topic = topic_name(settings.topic_namespace, MEETINGS.name)
    partition = TopicPartition(topic, meeting_partition(meeting_id))
    consumer = make_consumer(settings, None)
    await consumer.start()
    found: dict[str, bytes | None] = {}
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=500, max_records=5000)
            for record in batches.get(partition, []):
                key = record.key.decode() if record.key else ""
                if key == meeting_id or key.startswith(f"{meeting_id}/"):
                    found[key] = record.value
    finally:
        await consumer.stop()
    return found


def deleted_state(current: MeetingChangedV1, actor_id: str, now_ms: int) -> MeetingChangedV1:
    """The content-free marker that replaces ``current``: no title, agenda, glossary or schedule; its owner and
    creation time stay (who owned a purged meeting, and when, is for an audit)."""
    version = max(now_ms, current.meeting_version + 1)
    return MeetingChangedV1(
        event_id=ids.event_id("meeting.changed", current.meeting_id, version), meeting_id=current.meeting_id,
        change="deleted", actor_id=actor_id, title="", agenda=[], glossary=[], scheduled_start_ms=None,
        owner_id=current.owner_id,
        created_at_ms=current.created_at_ms, ended_at_ms=None, deleted=True, meeting_version=version,
    )  # fmt: skip


async def purge_meeting(settings: Settings, producer: AIOKafkaProducer, store: Store, meeting_id: str,
                        actor_id: str, now_ms: int) -> PurgeReport:  # fmt: skip
    """Erase ``meeting_id`` (see the module's docstring) on behalf of ``actor_id``. Raises NoSuchMeeting
    when the ``meetings`` topic never held it, and the broker's or store's errors as they come (a purge cut
    short is finished by running it again)."""
    entities = await meeting_entities(settings, meeting_id)
    state = entities.get(meeting_id)
    if state is None:
        raise NoSuchMeeting(meeting_id)
    current = decode_on(MEETINGS, state)
    assert isinstance(current, MeetingChangedV1)
    marker = current if current.deleted else deleted_state(current, actor_id, now_ms)
    meetings = topic_name(settings.topic_namespace, MEETINGS.name)
    sent = await producer.send_and_wait(meetings, encode(marker), key=meeting_id.encode(),
                                        partition=meeting_partition(meeting_id))  # fmt: skip
    for table, row in rows_for(marker, Provenance(meetings, sent.partition, sent.offset)):
        await store.ainsert(table, [row], COLUMNS[table], f"purge|{marker.event_id}")
    keys = [
        (MEETINGS, sorted(key for key, value in entities.items() if key != meeting_id and value is not None)),
        (MERGER_STATE, [meeting_id]),
        (ENRICHMENT_STATE, [meeting_id]),
        (INGEST_TIMELINES, [meeting_id]),
        (MEETING_VOCABULARY, [meeting_id]),
    ]
    for spec, spec_keys in keys:
        await _tombstones(settings, producer, spec, meeting_id, spec_keys)
    rows_deleted = await delete_meeting_rows(store, meeting_id)
    return PurgeReport(meeting_id, marker, {spec.name: k for spec, k in keys}, rows_deleted)


async def _tombstones(settings: Settings, producer: AIOKafkaProducer, spec: TopicSpec, meeting_id: str,
                      keys: list[str]) -> None:  # fmt: skip
    # Every key of a meeting lives in its meeting's partition (the merger's state in the partition of the
    # transcripts it came from, which Kafka's default partitioner picked by the meeting id: the same).
    topic, partition = topic_name(settings.topic_namespace, spec.name), meeting_partition(meeting_id, spec.partitions)
    sent = [await producer.send(topic, None, key=key.encode(), partition=partition) for key in keys]
    for delivery in sent:
        await delivery
