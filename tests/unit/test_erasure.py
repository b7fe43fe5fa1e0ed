"""Erasure's pure parts: the content-free marker, which compacted topics a purge tombstones, and the store
writer dropping everything of a purged meeting but its marker (tests/integration/test_erasure.py runs the
whole purge on the real broker and store)."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord

from palaver.erasure import COMPACTED_KEYS, deleted_state
from palaver.events import ChatMessageV1, DialogueUpdateV1, MeetingChangedV1, MeetingWatermarkV1, encode
from palaver.events.base import EventV
from palaver.events.registry import CHAT, DIALOGUES, MEETINGS, TopicSpec, all_topics
from palaver.store.rows import COLUMNS
from palaver.store.writer import Batch, write_batch

GONE, KEPT = "mtg_gone", "mtg_kept"


def _meeting(meeting_id: str, deleted: bool = False) -> MeetingChangedV1:
    return MeetingChangedV1(event_id=f"evt_{meeting_id}_{deleted}", meeting_id=meeting_id,
                            change="deleted" if deleted else "created", actor_id="usr_1",
                            title="" if deleted else "Salaries", agenda=[] if deleted else ["raises"],
                            owner_id="usr_1", created_at_ms=1, deleted=deleted, meeting_version=5 if deleted else 2)  # fmt: skip


def _chat(meeting_id: str) -> ChatMessageV1:
    return ChatMessageV1(event_id=f"evt_chat_{meeting_id}", message_id=f"msg_{meeting_id}", meeting_id=meeting_id,
                         user_id="usr_1", text="secret numbers", sent_at_ms=1000)  # fmt: skip


def _dialogue(meeting_id: str) -> list[EventV]:
    update = DialogueUpdateV1(event_id=f"evt_d_{meeting_id}", dialogue_id=f"dlg_{meeting_id}", meeting_id=meeting_id,
                              speaker_id="usr_1", run="whisper:tiny.en", start_ms=0, end_ms=1000, text="Hello.",
                              status="final", revision=1, position=0, utterance_ids=["utt_1"])  # fmt: skip
    mark = MeetingWatermarkV1(event_id=f"evt_w_{meeting_id}", meeting_id=meeting_id, run="whisper:tiny.en",
                              watermark_ms=2000, final_dialogues=1)  # fmt: skip
    return [update, mark]


def _batch(*events: tuple[TopicSpec, EventV]) -> Batch:
    batch = Batch()
    for offset, (spec, event) in enumerate(events):
        value = encode(event)
        batch.add(ConsumerRecord(spec.name, 0, offset, 0, 0, b"k", value, None, 0, len(value), ()), spec)
    return batch


def test_the_marker_keeps_no_content_and_outranks_the_state_it_replaces() -> None:
    current = _meeting(GONE).model_copy(update={"scheduled_start_ms": 5000, "ended_at_ms": 9000})
    marker = deleted_state(current, "usr_admin", now_ms=3)
    assert (marker.change, marker.deleted, marker.title, marker.agenda) == ("deleted", True, "", [])
    assert (marker.scheduled_start_ms, marker.ended_at_ms, marker.actor_id) == (None, None, "usr_admin")
    assert marker.meeting_version == 3  # above 2 even though the clock says 3 ms since the epoch
    assert deleted_state(current, "usr_admin", now_ms=10_000).meeting_version == 10_000


def test_every_compacted_topic_keyed_by_meeting_is_tombstoned() -> None:
    by_meeting = {t.name for t in all_topics() if "compact" in t.cleanup_policy and "meeting" in t.key}
    assert by_meeting == set(COMPACTED_KEYS)


def test_a_batch_drops_everything_of_a_purged_meeting_but_its_marker() -> None:
    batch = _batch((MEETINGS, _meeting(GONE)), (CHAT, _chat(GONE)), (CHAT, _chat(KEPT)),
                   *((DIALOGUES, e) for e in _dialogue(GONE)), *((DIALOGUES, e) for e in _dialogue(KEPT)),
                   (MEETINGS, _meeting(GONE, deleted=True)))  # fmt: skip
    assert batch.meeting_ids() == {GONE, KEPT}
    assert batch.markers() == {GONE}
    kept = batch.without({GONE})
    assert kept.meeting_ids() == {KEPT}
    version = COLUMNS["meetings"].index("version")
    assert [(row[0], row[version]) for row in kept.rows["meetings"]] == [(GONE, 5)]  # only the marker
    assert {row[1] for row in kept.rows["chat_messages"]} == {KEPT}
    assert set(kept.watermarks) == {(KEPT, "whisper:tiny.en")}
    assert all(len(kept.rows[t]) == len(kept.sources[t]) for t in kept.rows)
    assert batch.without(set()).rows == batch.rows


class _Store:
    """Knows ``purged`` as purged; keeps what it is asked to insert and run."""

    database = "db"

    def __init__(self, purged: set[str]) -> None:
        self.purged = purged
        self.inserted: dict[str, list[tuple[Any, ...]]] = {}
        self.commands: list[str] = []

    async def aquery(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if "deleted = 1" in sql:
            return [{"meeting_id": m} for m in (parameters or {})["ids"] if m in self.purged]
        if "system.columns" in sql:
            return [{"table": "chat_messages"}]
        return [{"n": 0}]

    async def ainsert(self, table: str, rows: Any, columns: Any, token: str) -> None:
        self.inserted.setdefault(table, []).extend(tuple(r) for r in rows)

    async def acommand(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.commands.append(sql)


async def test_the_store_writer_writes_nothing_of_a_meeting_the_store_knows_as_purged() -> None:
    store = _Store(purged={GONE})
    batch = _batch((CHAT, _chat(GONE)), (CHAT, _chat(KEPT)), *((DIALOGUES, e) for e in _dialogue(GONE)))
    assert await write_batch(store, batch) == 1  # type: ignore[arg-type]
    assert {row[1] for row in store.inserted["chat_messages"]} == {KEPT}
    assert "dialogues" not in store.inserted and "transcripts" not in store.inserted
    assert store.commands == []  # nothing of a purged meeting went in, so nothing to delete after


async def test_rows_inserted_while_their_meeting_was_purged_are_deleted_after() -> None:
    store = _Store(purged=set())
    original = store.ainsert

    async def purge_meanwhile(table: str, rows: Any, columns: Any, token: str) -> None:
        await original(table, rows, columns, token)
        store.purged.add(GONE)  # a purge stores its marker while this batch is on its way

    store.ainsert = purge_meanwhile  # type: ignore[method-assign]
    assert await write_batch(store, _batch((CHAT, _chat(GONE)))) == 1  # type: ignore[arg-type]
    assert len(store.commands) == 1
    assert store.commands[0].startswith("ALTER TABLE db.chat_messages DELETE WHERE meeting_id")
