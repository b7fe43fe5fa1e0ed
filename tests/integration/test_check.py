"""``palaver check`` on the real pipeline: a meeting streamed through the real ingest with an ack log, STT
(Whisper), merger and store is valid; then faults injected into the real broker and the real ClickHouse,
one after the other, are each reported with their ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.structs import ConsumerRecord

from palaver import ids
from palaver.ack_log import AckLog, acked_ranges
from palaver.check.report import (
    ACKED_AUDIO_LOST,
    AUDIO_DUPLICATED,
    DIALOGUES_OUT_OF_ORDER,
    UTTERANCES_DUPLICATED,
    UTTERANCES_LOST,
    Report,
    to_text,
)
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.audio_frame_v1 import AUDIO_EVENT, event_type
from palaver.events.registry import AUDIO_FRAMES
from palaver.store.rows import COLUMNS
from palaver.streams.clients import headers_dict, make_admin, make_producer
from palaver.streams.topic_reader import read_topic
from stack.check import check_meeting
from tests.integration.conftest import Pipeline, poll
from tests.integration.meetings import open_meeting, stream_tracks
from tests.integration.test_replay import LIVE, all_final, final_dialogues, settled

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("pipeline", ["whisper"], indirect=True)]

SCRIPT = (
    Line("ana", "The budget for the new office is approved."),
    Line("ben", "Then we can move in before the end of the month."),
    Line("ana", "I will tell the whole team this afternoon."),
)


async def report_of(p: Pipeline, meeting_id: str, log: Path) -> Report:
    return await check_meeting(p.settings, p.store, meeting_id, acked_ranges(log.read_bytes().splitlines(), meeting_id))


async def frames_of(p: Pipeline, stream: str) -> list[ConsumerRecord]:
    """The stream's audio frames on the topic, in order."""
    found: list[ConsumerRecord] = []

    def take(record: ConsumerRecord) -> None:
        if record.key == stream.encode() and event_type(headers_dict(record.headers)) == AUDIO_EVENT:
            found.append(record)

    await read_topic(p.settings, AUDIO_FRAMES, None, take)
    return found


async def utterance_row(p: Pipeline, utterance_id: str) -> dict[str, Any]:
    columns = ", ".join(COLUMNS["utterances"])
    (row,) = await p.store.aquery(
        f"SELECT {columns} FROM {p.store.database}.utterances FINAL WHERE utterance_id = {{u:String}}",
        {"u": utterance_id},
    )
    return row


async def test_a_clean_meeting_is_valid_and_each_injected_fault_is_reported(pipeline: Pipeline, tmp_path: Path) -> None:
    tracks, _ = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(pipeline.url, tracks)
    meeting_id = meeting.meeting_id
    log = tmp_path / "acks.jsonl"
    with AckLog(log) as ack_log:
        results = await stream_tracks(pipeline.url, meeting, tracks, speed=4.0, ack_log=ack_log)
    assert [(r.close_code, r.acked_samples) for r in results] == [(1000, len(pcm)) for pcm in tracks.values()]
    dialogues = await poll(lambda: final_dialogues(pipeline, meeting_id, LIVE), lambda rows: all_final(rows, len(SCRIPT)),
                           "the meeting's dialogues, final and placed", timeout_s=240)  # fmt: skip
    await settled(pipeline)

    clean = await report_of(pipeline, meeting_id, log)
    assert clean.valid, to_text(clean)
    assert clean.checked["acked connections"] == 2 and clean.checked["streams"] == 2, clean.checked
    assert clean.checked["utterances stored"] >= len(SCRIPT) and clean.checked["dialogues"] == len(SCRIPT)
    assert clean.notes == [], clean.notes

    # 1. ClickHouse loses an utterance row that a final dialogue holds.
    lost = dialogues[1]["utterance_ids"][0]
    await pipeline.store.acommand(f"ALTER TABLE {pipeline.store.database}.utterances DELETE WHERE utterance_id = "
                                  "{u:String} SETTINGS mutations_sync = 2", {"u": lost})  # fmt: skip
    report = await report_of(pipeline, meeting_id, log)
    assert report.anomaly_types == [UTTERANCES_LOST], to_text(report)
    (finding,) = report.findings
    assert finding.ids == {"run": LIVE, "utterance_id": lost}
    assert "final on the transcripts topic" in finding.detail and dialogues[1]["dialogue_id"] in finding.detail

    # 2. ClickHouse gains a second transcription of samples another utterance has (another id).
    original = await utterance_row(pipeline, dialogues[0]["utterance_ids"][0])
    again = {**original, "start_sample": original["start_sample"] + 1600,
             "utterance_id": ids.utterance_id(original["stream_id"], original["start_sample"] + 1600)}  # fmt: skip
    await pipeline.store.ainsert("utterances", [list(again.values())], list(again), "check-test-duplicate")
    report = await report_of(pipeline, meeting_id, log)
    assert report.anomaly_types == [UTTERANCES_LOST, UTTERANCES_DUPLICATED], to_text(report)
    (finding,) = report.of_kind(UTTERANCES_DUPLICATED)
    assert finding.ids["utterance_id"] == f"{original['utterance_id']},{again['utterance_id']}"
    assert finding.ids["stream_id"] == original["stream_id"]

    # 3. A placed dialogue's newer revision moves it to the end of the meeting.
    first = dialogues[0]["dialogue_id"]
    await pipeline.store.acommand(
        f"INSERT INTO {pipeline.store.database}.dialogues SELECT * REPLACE (revision + 1 AS revision, "
        f"{len(SCRIPT) - 1} AS position) FROM {pipeline.store.database}.dialogues FINAL WHERE dialogue_id = {{d:String}}",
        {"d": first},
    )  # fmt: skip
    report = await report_of(pipeline, meeting_id, log)
    assert DIALOGUES_OUT_OF_ORDER in report.anomaly_types, to_text(report)
    misplaced = report.of_kind(DIALOGUES_OUT_OF_ORDER)
    assert any(first in f.ids["dialogue_id"] for f in misplaced), misplaced
    assert any("no dialogue is placed at position(s) 0" in f.detail for f in misplaced), misplaced

    # 4. The audio topic gets one of ana's frames a second time.
    ana = ids.stream_id(meeting_id, meeting.people["ana"].user_id)
    frames = await frames_of(pipeline, ana)
    copied = frames[5]
    producer = make_producer(pipeline.settings)
    await producer.start()
    try:
        await producer.send_and_wait(copied.topic, copied.value, key=copied.key, partition=copied.partition,
                                     headers=list(copied.headers))  # fmt: skip
    finally:
        await producer.stop()
    report = await report_of(pipeline, meeting_id, log)
    (finding,) = report.of_kind(AUDIO_DUPLICATED)
    assert finding.ids["stream_id"] == ana and finding.ids["frames"].startswith(f"{copied.partition}@{copied.offset},")
    first_sample = int(headers_dict(copied.headers)["first_sample"])
    assert f"samples {first_sample}-{first_sample + 1600}" in finding.detail and "in one connection" in finding.detail

    # 5. The broker loses the head of ana's partition: audio acknowledged to her client is gone, but for the
    # samples of the copy from 4 (after the cut, it stays).
    cut = frames[10]
    admin = make_admin(pipeline.settings)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(cut.topic, cut.partition): RecordsToDelete(cut.offset)})
    finally:
        await admin.close()
    report = await report_of(pipeline, meeting_id, log)
    assert ACKED_AUDIO_LOST in report.anomaly_types, to_text(report)
    lost_audio = [f for f in report.of_kind(ACKED_AUDIO_LOST) if f.ids["stream_id"] == ana]
    cut_at = int(headers_dict(cut.headers)["first_sample"])
    expected = [f"samples 0-{first_sample}", f"samples {first_sample + 1600}-{cut_at}"]
    assert [f.detail.split(" (")[0] for f in lost_audio] == expected, lost_audio
    assert lost_audio[0].ids["connection"] in log.read_text()
