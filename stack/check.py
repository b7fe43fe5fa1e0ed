"""``palaver check --meeting ID [--client-log FILE] [--json]``: the I/O edge of the checker.

It reads the meeting's records on the audio topic (every partition: audio is keyed by stream) and its
finals on the transcripts topic (the meeting's partition), from the meeting's creation on (less a margin
for clock skew; from the oldest record when the meetings topic does not know it), up to the ends the
partitions have when it starts; its utterances and dialogues from ClickHouse; and the clients' ack logs.
The judging is ``palaver.check``'s. It reads without a consumer group and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.exceptions import DatabaseError

from palaver import ids
from palaver.ack_log import AckedRange, AckLogError, acked_ranges
from palaver.check.audio import AudioSeen, check_audio
from palaver.check.report import Report, to_json, to_text
from palaver.check.transcripts import UtteranceSeen, check_transcripts, final_seen
from palaver.erasure import meeting_entities
from palaver.events import MeetingChangedV1, decode_on
from palaver.events.registry import (
    AUDIO_FRAMES,
    MEETINGS,
    TRANSCRIPTS,
    meeting_partition,
)
from palaver.settings import Settings
from palaver.store import Store, StoreUnavailable, open_store
from palaver.store.client import scrub
from palaver.store.consistency import stored_dialogues, stored_utterances
from palaver.streams.clients import headers_dict, wait_for_broker
from palaver.streams.topic_reader import read_topic

VALID_EXIT = 0
ANOMALIES_EXIT = 1
USAGE_EXIT = 2
SKEW_MARGIN_MS = 10 * 60 * 1000  # read from this long before the meeting's creation


class CheckError(Exception):
    """Nothing to judge: bad input, no broker, no store, a meeting with no trace (exit 2)."""


async def meeting_created_ms(settings: Settings, meeting_id: str) -> int | None:
    """When the meeting was created (wall clock ms), from its state on the meetings topic; None: unknown."""
    raw = (await meeting_entities(settings, meeting_id)).get(meeting_id)
    event = decode_on(MEETINGS, raw) if raw is not None else None
    return event.created_at_ms if isinstance(event, MeetingChangedV1) else None


async def read_audio(settings: Settings, meeting_id: str, since_ms: int | None) -> AudioSeen:
    audio = AudioSeen(meeting_id)
    await read_topic(settings, AUDIO_FRAMES, since_ms,
                     lambda r: audio.note(r.key, r.value, headers_dict(r.headers), r.partition, r.offset))  # fmt: skip
    return audio


async def read_finals(settings: Settings, meeting_id: str, since_ms: int | None) -> list[UtteranceSeen]:
    """The meeting's ``transcript.final`` events (its partition: the topic is keyed by meeting)."""
    finals: list[UtteranceSeen] = []
    key = meeting_id.encode()

    def take(record: ConsumerRecord) -> None:
        if record.key == key and (
            final := final_seen(meeting_id, record.value, f"{record.partition}@{record.offset}")
        ):
            finals.append(final)

    await read_topic(
        settings, TRANSCRIPTS, since_ms, take, lambda count: meeting_partition(meeting_id, count)
    )
    return finals


async def check_meeting(settings: Settings, store: Store, meeting_id: str,
                        acked: Sequence[AckedRange] | None) -> Report:  # fmt: skip
    """The meeting's report: its audio against ``acked`` (None: no client log), its utterances and dialogues.
    Raises CheckError when neither the topics, the store nor ``acked`` hold anything of it."""
    created = await meeting_created_ms(settings, meeting_id)
    since = None if created is None else created - SKEW_MARGIN_MS
    audio = await read_audio(settings, meeting_id, since)
    finals = await read_finals(settings, meeting_id, since)
    utterances = await stored_utterances(store, meeting_id)
    dialogues = await stored_dialogues(store, meeting_id)
    if not (audio.frames or audio.connections or finals or utterances or dialogues or acked):
        raise CheckError(f"nothing of meeting {meeting_id} on the audio topic, the transcripts topic or in the "
                         "store (a wrong id, another PALAVER_TOPIC_NAMESPACE or database, or expired audio)")  # fmt: skip
    sound = check_audio(audio, acked)
    live = any(not c or c[-1].end_sample is None for c in audio.connections.values())
    text = check_transcripts(utterances, finals, dialogues, streams_live=live)
    report = Report(
        meeting_id, sound.findings + text.findings, {**sound.checked, **text.checked}, list(text.notes)
    )
    if acked is None:
        report.notes.append("no client log: acknowledged audio is not judged (--client-log FILE)")
    if sound.resent:
        report.notes.append(f"{sound.resent} frame(s) sent again by a resumed connection (the protocol allows "
                            "it: the STT workers drop audio they have by its position)")  # fmt: skip
    if audio.unreadable:
        report.notes.append(f"{audio.unreadable} record(s) of the meeting on the audio topic are not frames or "
                            "lifecycle events (the STT workers dead-letter them)")  # fmt: skip
    return report


def load_acked(paths: Sequence[str], meeting_id: str) -> list[AckedRange]:
    """The meeting's acknowledged ranges in the ack logs at ``paths``; CheckError for one that cannot be
    read or holds a line that is not a record."""
    ranges: list[AckedRange] = []
    for path in paths:
        try:
            with open(Path(path).expanduser(), "rb") as lines:
                ranges.extend(acked_ranges(lines, meeting_id))
        except OSError as exc:
            raise CheckError(f"--client-log {path}: {exc.strerror}") from None
        except AckLogError as exc:
            raise CheckError(f"--client-log {path}: {exc}") from None
    return ranges


def check_command(settings: Settings, meeting_id: str, client_logs: Sequence[str], as_json: bool) -> int:
    """``palaver check``: prints the report; 0 valid, 1 anomalies found. CheckError: exit 2."""
    if not ids.is_valid_id_part(meeting_id):
        raise CheckError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")
    acked = load_acked(client_logs, meeting_id) if client_logs else None
    try:
        store = open_store(settings, migrate=False)
    except StoreUnavailable as exc:
        raise CheckError(f"{exc}; with the embedded ClickHouse (chdb), stop Palaver first") from None

    async def go() -> Report:
        try:
            await wait_for_broker(settings, timeout_s=10)
        except TimeoutError as exc:
            raise CheckError(str(exc)) from None
        return await check_meeting(settings, store, meeting_id, acked)

    try:
        report = asyncio.run(go())
    except (StoreUnavailable, KafkaError) as exc:
        raise CheckError(str(exc)) from None
    except DatabaseError as exc:  # no such database or table: another PALAVER_CLICKHOUSE_DATABASE, or none yet
        first_line = (scrub(str(exc), settings.clickhouse_dsn).splitlines() or [""])[0][:300]
        raise CheckError(f"the store cannot be read: {first_line}") from None
    finally:
        store.close()
    print(json.dumps(to_json(report), indent=2) if as_json else to_text(report))
    return VALID_EXIT if report.valid else ANOMALIES_EXIT
