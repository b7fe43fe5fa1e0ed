"""Every topic Palaver uses: its key, configuration, dead-letter topic, the event classes it carries, and
who produces and who consumes it.

The one source of these facts: the codec's table of event classes (``json_event_classes``), the
``palaver topics`` listing and the topics table of docs/architecture.md (``palaver.events.topics_table``)
derive from it, and the contract test (tests/unit/test_contracts.py) runs every example payload through
every consumer named here. Producers and consumers are named as ``palaver run`` names the services
(ingest, api, store, stt, merger); a reader that is one part of a service has its own name (``live``).

Actual topic names carry the settings' namespace, so tests and side-by-side deployments never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from palaver.events.audio_frame_v1 import AudioFrameV1
from palaver.events.base import EventV
from palaver.events.chat_v1 import ChatMessageV1
from palaver.events.dialogue_update_v1 import DialogueUpdateV1
from palaver.events.edits_v1 import ActionItemEditedV1, DialogueEditedV1, TranscriptEditedV1
from palaver.events.insights_v1 import EnrichmentRequestedV1, MeetingInsightsV1, SummaryChunkV1
from palaver.events.meeting_vocabulary_v1 import MeetingVocabularyV1
from palaver.events.meeting_watermark_v1 import MeetingWatermarkV1
from palaver.events.meetings_v1 import MeetingChangedV1, MeetingLinkV1, MeetingMemberV1
from palaver.events.name_claims_v1 import NameClaimV1, NameDecisionV1, NameReleaseV1
from palaver.events.sessions_v1 import SessionRevokedV1
from palaver.events.stream_lifecycle_v1 import StreamStartedV1, StreamStoppedV1
from palaver.events.stream_progress_v1 import StreamProgressV1
from palaver.events.transcript_final_v1 import TranscriptFinalV1
from palaver.events.transcript_partial_v1 import TranscriptPartialV1
from palaver.events.users_v1 import UserChangedV1

DAY_MS = 24 * 3600 * 1000
DLQ_PARTITIONS = 1
DLQ_RETENTION_MS = 30 * DAY_MS

EventClass = type[EventV] | type[AudioFrameV1]


def schema_of(cls: EventClass) -> tuple[str, int]:
    """(event name, version) of an event class: ``("transcript.final", 1)`` for ``TranscriptFinalV1``."""
    if issubclass(cls, EventV):
        fields = cls.model_fields
        return fields["event"].default, fields["version"].default
    return cls.EVENT, cls.VERSION


def schema_name(cls: EventClass) -> str:
    """``"transcript.final/1"``: how the registry's listings name an event version."""
    event, version = schema_of(cls)
    return f"{event}/{version}"


@dataclass(frozen=True)
class Consumer:
    """One reader of a topic. ``name``: the service ``palaver run`` starts, or the reader's own name when it
    is one part of a service (``service``). ``group``: its consumer group; None for a reader without one,
    which commits nothing and so skips a bad message instead of dead-lettering it."""

    name: str
    service: str
    group: str | None

    @property
    def label(self) -> str:
        """``"store"``; ``"live (api)"`` for a reader that is one part of a service."""
        return self.name if self.name == self.service else f"{self.name} ({self.service})"


STT = Consumer("stt", service="stt", group="stt")
MERGER = Consumer("merger", service="merger", group="merger")
STORE = Consumer("store", service="store", group="store")
# The API's fan-out of dialogue, chat and membership events to live WebSockets (api/live.py): each API
# process reads the dialogues, chat and meetings topics from their end, without a group.
LIVE = Consumer("live", service="api", group=None)
# The merger restoring its state (palaver/streams/changelog.py): it reads a changelog partition to its end
# when it is assigned the input partition, without a group.
MERGER_RESTORE = Consumer("merger", service="merger", group=None)
# `palaver dlq replay` reading which dead letters it sent back (palaver/streams/dlq_tools.py).
DLQ_TOOL = Consumer("palaver dlq", service="palaver dlq", group=None)
# The name registry (api/name_registry.py): every API process runs one member of the "names" group, so
# each name has exactly one decider at a time. It restores its state from its changelog (group-less, as the
# merger) and, on its first start in a deployment, reads the users topic to learn the names already taken.
NAMES = Consumer("names", service="api", group="names")
NAMES_RESTORE = Consumer("names", service="api", group=None)
# The askers waiting for their decisions (api/name_claims.py): each API process, and `palaver admin
# create-user`, reads the decisions topic from its end without a group.
CLAIMANTS = Consumer("claimants", service="api", group=None)
ADMIN_TOOL = Consumer("palaver admin", service="palaver admin", group=None)
# `palaver replay` (stt_workers/replay.py): reads a meeting's state (is it erased, when did it start), its
# vocabulary and its audio, without a group, and writes a run of its own to the transcripts topic.
REPLAY = Consumer("palaver replay", service="palaver replay", group=None)
# `palaver check` (stack/check.py): reads a meeting's state (when it began), its audio and its finals,
# without a group, and writes nothing.
CHECK = Consumer("palaver check", service="palaver check", group=None)
# Enrichment (enrichment/service.py): one consumer group reads the dialogues (activity, placed dialogues)
# and the requests, co-partitioned, and restores its per-meeting state from its changelog like the merger.
ENRICHMENT = Consumer("enrichment", service="enrichment", group="enrichment")
ENRICHMENT_RESTORE = Consumer("enrichment", service="enrichment", group=None)
# Every ingest process following the meetings' timelines (ingest/timeline_log.py): the whole topic from its
# beginning, without a group.
INGEST_TIMELINES_READER = Consumer("ingest", service="ingest", group=None)
# The webhook sender (enrichment/webhooks.py): in the enrichment process when PALAVER_WEBHOOK_URLS is set, its
# own group on insights POSTs each meeting's final result to the operator's URLs.
WEBHOOKS = Consumer("webhooks", service="enrichment", group="webhooks")
# Every STT worker following the meetings' vocabularies (stt_workers/vocabulary_follower.py): the whole topic
# from its beginning, without a group (any worker may hold any meeting's streams).
VOCABULARY_READER = Consumer("vocabulary", service="stt", group=None)
# Commands run by people beside the services: they produce and consume like a service.
TOOLS = ("palaver admin", "palaver dlq", "palaver replay", "palaver check")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    retention_ms: int  # -1 keeps forever: the log is the system of record
    cleanup_policy: str
    events: tuple[EventClass, ...]  # what a message on it may be; empty for a state topic (JSON state)
    producers: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    dlq: str | None = None
    config: dict[str, str] = field(default_factory=dict)

    @property
    def schemas(self) -> tuple[str, ...]:
        """The events' names and versions, ``("audio.frame/1", ...)``."""
        return tuple(schema_name(cls) for cls in self.events)

    def kafka_config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy, **self.config}


AUDIO_FRAMES = TopicSpec(
    name="audio.frames",
    key="stream_id",
    partitions=6,
    retention_ms=7 * DAY_MS,  # long enough to reprocess a week's meetings with another engine (palaver replay)
    cleanup_policy="delete",
    events=(AudioFrameV1, StreamStartedV1, StreamStoppedV1),
    producers=("ingest",),
    consumers=(STT, REPLAY, CHECK),
    dlq="audio.frames.dlq",
    config={"max.message.bytes": str(1 << 20)},
)
TRANSCRIPTS = TopicSpec(
    name="transcripts",
    key="meeting_id",
    partitions=6,
    retention_ms=-1,
    cleanup_policy="delete",
    # The STT worker forwards each stream's lifecycle events here, in order with its transcripts.
    events=(TranscriptPartialV1, TranscriptFinalV1, StreamStartedV1, StreamStoppedV1, StreamProgressV1),
    producers=("stt", "palaver replay"),
    consumers=(MERGER, STORE, REPLAY, CHECK),  # palaver replay --from transcripts
    dlq="transcripts.dlq",
)
DIALOGUES = TopicSpec(
    name="dialogues",
    key="meeting_id",
    partitions=6,
    retention_ms=-1,
    cleanup_policy="delete",
    events=(DialogueUpdateV1, MeetingWatermarkV1),
    producers=("merger", "palaver replay"),  # palaver replay --from transcripts: a merged run's dialogues
    consumers=(STORE, LIVE, ENRICHMENT, REPLAY),
    dlq="dialogues.dlq",
)
EDITS = TopicSpec(
    name="edits",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,  # human work: never expires
    cleanup_policy="delete",
    events=(DialogueEditedV1, TranscriptEditedV1, ActionItemEditedV1),
    producers=("api", "enrichment"),  # enrichment: auto-correct's machine edits
    consumers=(STORE,),
    dlq="edits.dlq",
)
USERS = TopicSpec(
    name="users",
    key="user_id",
    partitions=3,
    retention_ms=-1,
    # Each event is the user's whole state, so compaction keeps the newest state per user forever (a
    # replay rebuilds the table) and drops superseded states, old password hashes included.
    cleanup_policy="compact",
    events=(UserChangedV1,),
    producers=("api", "palaver admin"),
    consumers=(STORE, NAMES_RESTORE),
    dlq="users.dlq",
)
CHAT = TopicSpec(
    name="chat",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,  # what people wrote: never expires
    cleanup_policy="delete",
    events=(ChatMessageV1,),
    producers=("api",),
    consumers=(STORE, LIVE),
    dlq="chat.dlq",
)

MEETINGS = TopicSpec(
    name="meetings",
    key="meeting entity",  # <meeting_id>, <meeting_id>/member/<user_id> or <meeting_id>/link/<link_id>
    partitions=3,
    retention_ms=-1,
    # Each event is one entity's whole state, so compaction keeps the newest state of each, and erasing a
    # meeting is a tombstone per key. Records go to the partition of their meeting (meeting_partition).
    cleanup_policy="compact",
    events=(MeetingChangedV1, MeetingMemberV1, MeetingLinkV1),
    producers=("api",),
    consumers=(STORE, LIVE, REPLAY, CHECK),
    dlq="meetings.dlq",
)
# What each meeting's speech decoder should expect: participant names, title, agenda, glossary. Each event
# is the meeting's whole vocabulary, so compaction keeps the newest per meeting; erasing it is a tombstone.
MEETING_VOCABULARY = TopicSpec(
    name="meeting.vocabulary",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,
    cleanup_policy="compact",
    events=(MeetingVocabularyV1,),
    producers=("api",),
    consumers=(VOCABULARY_READER, REPLAY),  # readers without a group skip a bad record: no dead-letter topic
)
SESSIONS = TopicSpec(
    name="sessions",
    key="session_id",
    partitions=3,
    # A revocation matters until the session's tokens expire (PALAVER_SESSION_TTL_S, 14 days by default);
    # kept a while longer, then deleted.
    retention_ms=30 * DAY_MS,
    cleanup_policy="compact,delete",
    events=(SessionRevokedV1,),
    producers=("api",),
    consumers=(STORE,),
    dlq="sessions.dlq",
)

NAME_CLAIMS = TopicSpec(
    name="name.claims",
    key="name",  # normalized: "username:alice", "email:ana@example.com"
    partitions=6,
    # Requests: what they decided lives on in name.owners, so a week covers any replay of a decider.
    retention_ms=7 * DAY_MS,
    cleanup_policy="delete",
    events=(NameClaimV1, NameReleaseV1),
    producers=("api", "palaver admin"),
    consumers=(NAMES,),
    dlq="name.claims.dlq",
)
NAME_DECISIONS = TopicSpec(
    name="name.decisions",
    key="name",
    partitions=3,
    retention_ms=DAY_MS,  # answers to requests that wait seconds
    cleanup_policy="delete",
    events=(NameDecisionV1,),
    producers=("api",),
    consumers=(CLAIMANTS, ADMIN_TOOL),
)

ENRICHMENT_REQUESTS = TopicSpec(
    name="enrichment.requests",
    key="meeting_id",
    # Co-partitioned with dialogues (same key, partitions and partitioner): one enrichment consumer owns a
    # meeting's activity and its requests.
    partitions=DIALOGUES.partitions,
    retention_ms=7 * DAY_MS,  # requests are served within minutes; what they produced lives on in insights
    cleanup_policy="delete",
    events=(EnrichmentRequestedV1,),
    producers=("api", "palaver replay"),  # palaver replay --from dialogues
    consumers=(ENRICHMENT,),
    dlq="enrichment.requests.dlq",
)
INSIGHTS = TopicSpec(
    name="insights",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,  # derived, but a store rebuilt from the log keeps every result without re-enriching
    cleanup_policy="delete",
    events=(SummaryChunkV1, MeetingInsightsV1),
    producers=("enrichment",),
    consumers=(STORE, LIVE, WEBHOOKS, REPLAY),
    dlq="insights.dlq",
)

TOPICS: tuple[TopicSpec, ...] = (AUDIO_FRAMES, TRANSCRIPTS, DIALOGUES, EDITS, USERS, CHAT, MEETINGS,
                                 MEETING_VOCABULARY, SESSIONS, NAME_CLAIMS, NAME_DECISIONS, ENRICHMENT_REQUESTS,
                                 INSIGHTS)  # fmt: skip

# The merger's per-meeting state (palaver/streams/changelog.py): not events, but the durable copy of
# state derived from the transcripts topic, partitioned like it, compacted to the newest value per key.
MERGER_STATE = TopicSpec(
    name="merger.state",
    key="meeting_id",
    partitions=TRANSCRIPTS.partitions,
    retention_ms=-1,
    cleanup_policy="compact",
    events=(),
    producers=("merger",),
    consumers=(MERGER_RESTORE,),
)
# The name registry's state (api/name_registry.py): each name's owner, partitioned like name.claims.
NAME_OWNERS = TopicSpec(
    name="name.owners",
    key="name",
    partitions=NAME_CLAIMS.partitions,
    retention_ms=-1,
    cleanup_policy="compact",
    events=(),
    producers=("api",),
    consumers=(NAMES_RESTORE,),
)
# Enrichment's per-meeting state (enrichment/service.py): activity, progress and pending requests,
# partitioned like dialogues and enrichment.requests.
ENRICHMENT_STATE = TopicSpec(
    name="enrichment.state",
    key="meeting_id",
    partitions=DIALOGUES.partitions,
    retention_ms=-1,
    cleanup_policy="compact",
    events=(),
    producers=("enrichment",),
    consumers=(ENRICHMENT_RESTORE,),
)
# The meetings' media timelines (ingest/clock.py, ingest/timeline_log.py): per meeting its epoch and per
# stream its start and the audio it reached, derived from the streams' connections (their stream.started and
# stream.stopped), so any ingest process places a stream as any other would. Compaction keeps the newest
# record per meeting, which states the whole timeline; the lag leaves a writer time to restate a record
# that raced another.
INGEST_TIMELINES = TopicSpec(
    name="ingest.timelines",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,
    cleanup_policy="compact",
    events=(),
    producers=("ingest",),
    consumers=(INGEST_TIMELINES_READER,),
    config={"min.compaction.lag.ms": str(DAY_MS)},
)
STATE_TOPICS: tuple[TopicSpec, ...] = (MERGER_STATE, NAME_OWNERS, ENRICHMENT_STATE, INGEST_TIMELINES)

# Which dead letters `palaver dlq replay` sent back (palaver/streams/dlq_tools.py): one record per replayed
# DLQ offset, so a second replay skips them. A mark is written after its dead letter, so with the same
# retention it outlives it; compaction keeps the newest mark of a dead letter replayed again on purpose.
DLQ_REPLAYS = TopicSpec(
    name="dlq.replays",
    key="dead_letter",  # "<dlq topic>@<dlq offset>"
    partitions=1,
    retention_ms=DLQ_RETENTION_MS,
    cleanup_policy="compact,delete",
    events=(),
    producers=("palaver dlq",),
    consumers=(DLQ_TOOL,),
)


def dlq_spec(spec: TopicSpec) -> TopicSpec:
    """The dead-letter topic of ``spec``: its events, written by the consumers that dead-letter (those in a
    consumer group), read by people."""
    assert spec.dlq is not None
    return TopicSpec(
        name=spec.dlq,
        key=spec.key,
        partitions=DLQ_PARTITIONS,  # `palaver dlq` reads a DLQ as one partition
        retention_ms=DLQ_RETENTION_MS,
        cleanup_policy="delete",
        events=spec.events,
        producers=tuple(c.name for c in spec.consumers if c.group is not None),
        consumers=(),
        config=spec.config,
    )


def all_topics() -> list[TopicSpec]:
    return [*TOPICS, *(dlq_spec(t) for t in TOPICS if t.dlq), *STATE_TOPICS, DLQ_REPLAYS]


def json_event_classes(topics: tuple[TopicSpec, ...] = TOPICS) -> dict[tuple[str, int], type[EventV]]:
    """(event name, version) -> class, for every JSON event on ``topics``: the codec's table. Raises
    ValueError when two classes claim the same name and version."""
    table: dict[tuple[str, int], type[EventV]] = {}
    for spec in topics:
        for cls in spec.events:
            if not issubclass(cls, EventV):
                continue  # raw frames have their own decoder (AudioFrameV1.from_kafka)
            key = schema_of(cls)
            if table.setdefault(key, cls) is not cls:
                raise ValueError(f"{key[0]}/{key[1]} is claimed by {table[key].__name__} and {cls.__name__}")
    return table


def topics_consumed_by(name: str) -> tuple[TopicSpec, ...]:
    """The event topics a consumer (``"store"``, ``"live"``, ...) reads."""
    return tuple(spec for spec in TOPICS if any(c.name == name for c in spec.consumers))


def topics_produced_by(name: str) -> tuple[TopicSpec, ...]:
    """The event topics a service (``"stt"``, ``"merger"``, ...) writes its events to."""
    return tuple(spec for spec in TOPICS if name in spec.producers)


def meeting_partition(meeting_id: str, partitions: int = MEETINGS.partitions) -> int:
    """The partition of every record of one meeting on a topic keyed by meeting entity: Kafka's default
    partitioner would spread a meeting's member and link keys over partitions, and lose their order."""
    return (murmur2(meeting_id.encode()) & 0x7FFFFFFF) % partitions


def topic_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}" if namespace else name
