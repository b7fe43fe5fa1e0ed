"""Every topic Palaver uses: its key, configuration, dead-letter topic, producers, consumers and schemas.

Actual topic names carry the settings' namespace, so tests and side-by-side deployments never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    retention_ms: int  # -1 keeps forever: the log is the system of record
    cleanup_policy: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    schemas: tuple[str, ...]
    dlq: str | None = None
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy, **self.config}


AUDIO_FRAMES = TopicSpec(
    name="audio.frames",
    key="stream_id",
    partitions=6,
    retention_ms=7 * DAY_MS,  # long enough to reprocess a week's meetings with another engine
    cleanup_policy="delete",
    producers=("ingest",),
    consumers=("stt_workers",),
    schemas=("audio.frame/1", "stream.started/1", "stream.stopped/1"),
    dlq="audio.frames.dlq",
    config={"max.message.bytes": str(1 << 20)},
)
TRANSCRIPTS = TopicSpec(
    name="transcripts",
    key="meeting_id",
    partitions=6,
    retention_ms=-1,
    cleanup_policy="delete",
    producers=("stt_workers",),
    consumers=("merger", "store"),
    schemas=("transcript.partial/1", "transcript.final/1", "stream.started/1", "stream.stopped/1",
             "stream.progress/1"),
    dlq="transcripts.dlq",
)
DIALOGUES = TopicSpec(
    name="dialogues",
    key="meeting_id",
    partitions=6,
    retention_ms=-1,
    cleanup_policy="delete",
    producers=("merger",),
    consumers=("store", "api"),
    schemas=("dialogue.update/1", "meeting.watermark/1"),
    dlq="dialogues.dlq",
)
EDITS = TopicSpec(
    name="edits",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,  # human work: never expires
    cleanup_policy="delete",
    producers=("api",),
    consumers=("store",),
    schemas=("dialogue.edited/1", "transcript.edited/1", "action_item.edited/1"),
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
    producers=("api",),
    consumers=("store",),
    schemas=("user.changed/1",),
    dlq="users.dlq",
)
CHAT = TopicSpec(
    name="chat",
    key="meeting_id",
    partitions=3,
    retention_ms=-1,  # what people wrote: never expires
    cleanup_policy="delete",
    producers=("api",),
    consumers=("store",),
    schemas=("chat.message/1",),
    dlq="chat.dlq",
)

TOPICS: tuple[TopicSpec, ...] = (AUDIO_FRAMES, TRANSCRIPTS, DIALOGUES, EDITS, USERS, CHAT)

# The merger's per-meeting state (palaver/streams/changelog.py): not events, but the durable copy of
# state derived from the transcripts topic, partitioned like it, compacted to the newest value per key.
MERGER_STATE = TopicSpec(
    name="merger.state",
    key="meeting_id",
    partitions=TRANSCRIPTS.partitions,
    retention_ms=-1,
    cleanup_policy="compact",
    producers=("merger",),
    consumers=("merger",),
    schemas=(),
)
STATE_TOPICS: tuple[TopicSpec, ...] = (MERGER_STATE,)

DLQ_RETENTION_MS = 30 * DAY_MS

# Which dead letters `palaver dlq replay` sent back (palaver/streams/dlq_tools.py): one record per replayed
# DLQ offset, so a second replay skips them. A mark is written after its dead letter, so with the same
# retention it outlives it; compaction keeps the newest mark of a dead letter replayed again on purpose.
DLQ_REPLAYS = TopicSpec(
    name="dlq.replays",
    key="dead_letter",  # "<dlq topic>@<dlq offset>"
    partitions=1,
    retention_ms=DLQ_RETENTION_MS,
    cleanup_policy="compact,delete",
    producers=("palaver dlq",),
    consumers=("palaver dlq",),
    schemas=(),
)


def dlq_spec(spec: TopicSpec) -> TopicSpec:
    assert spec.dlq is not None
    return TopicSpec(
        name=spec.dlq,
        key=spec.key,
        partitions=1,
        retention_ms=DLQ_RETENTION_MS,
        cleanup_policy="delete",
        producers=tuple(spec.consumers),
        consumers=(),
        schemas=spec.schemas,
        config=spec.config,
    )


def all_topics() -> list[TopicSpec]:
    return [*TOPICS, *(dlq_spec(t) for t in TOPICS if t.dlq), *STATE_TOPICS, DLQ_REPLAYS]


def topic_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}" if namespace else name
