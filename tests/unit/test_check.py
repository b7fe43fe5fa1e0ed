"""``palaver check``'s judging (palaver/check/, palaver/ack_log.py) on plain data: clean data is valid, and
each fault it claims to detect, injected, is reported with its ids (a checker that cannot fail is a defect).
tests/integration/test_check.py runs it on a real meeting and real faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from palaver import ids
from palaver.ack_log import AckedRange, AckLog, AckLogError, acked_ranges
from palaver.check.audio import AudioSeen, check_audio
from palaver.check.intervals import missing, union
from palaver.check.report import (
    ACKED_AUDIO_LOST,
    AUDIO_DUPLICATED,
    AUDIO_LOST,
    DIALOGUES_OUT_OF_ORDER,
    KINDS,
    UTTERANCES_DUPLICATED,
    UTTERANCES_LOST,
    Report,
    to_json,
    to_text,
)
from palaver.check.transcripts import DialogueSeen, UtteranceSeen, check_transcripts
from palaver.events import StreamStartedV1, StreamStoppedV1, encode
from palaver.events.audio_frame_v1 import AudioFrameV1
from stack.cli import main

MEETING = "mtg_check"
STREAM = ids.stream_id(MEETING, "usr_ana")
FRAME = 1600  # 100 ms
PCM = np.arange(20 * FRAME, dtype=np.int16) % 3000  # two seconds; no two frames alike


class Topic:
    """A stream's records on the audio topic, in partition order, as the ingest writes them."""

    def __init__(self, stream: str = STREAM) -> None:
        self.stream = stream
        self.audio = AudioSeen(MEETING)
        self.offset = 0

    def _note(self, value: bytes, headers: dict[str, bytes]) -> None:
        self.audio.note(self.stream.encode(), value, headers, 2, self.offset)
        self.offset += 1

    def started(self, first_sample: int, connection: str | None = None) -> None:
        event = StreamStartedV1(event_id=f"evt_s{first_sample}", meeting_id=MEETING, speaker_id="usr_ana",
                                stream_id=self.stream, sample_rate=16000, stream_start_ms=0, first_sample=first_sample,
                                connection=connection)  # fmt: skip
        self._note(encode(event), {"event": b"stream.started", "version": b"1"})

    def stopped(self, end_sample: int, connection: str | None = None) -> None:
        event = StreamStoppedV1(event_id=f"evt_e{end_sample}", meeting_id=MEETING, speaker_id="usr_ana",
                                stream_id=self.stream, stream_start_ms=0, end_sample=end_sample, sample_rate=16000,
                                reason="end", connection=connection)  # fmt: skip
        self._note(encode(event), {"event": b"stream.stopped", "version": b"1"})

    def frame(self, first_sample: int, pcm: np.ndarray | None = None, connection: str | None = None) -> None:
        pcm = PCM[first_sample : first_sample + FRAME] if pcm is None else pcm
        frame = AudioFrameV1(MEETING, "usr_ana", self.stream, 16000, first_sample, 0, pcm.astype("<i2").tobytes(),
                             connection=connection)  # fmt: skip
        self._note(frame.pcm, dict(frame.kafka_headers()))

    def connection(self, first_sample: int, end_sample: int, stop: bool = True) -> None:
        self.started(first_sample)
        for at in range(first_sample, end_sample, FRAME):
            self.frame(at)
        if stop:
            self.stopped(end_sample)


def acked(first: int, up_to: int, connection: str = "c1") -> AckedRange:
    return AckedRange(STREAM, connection, first, up_to)


# --- the ack log -----------------------------------------------------------------------------------------


def test_the_ack_log_gives_each_connection_its_acknowledged_range(tmp_path: Path) -> None:
    path = tmp_path / "acks.jsonl"
    with AckLog(path) as log:
        one = log.connection(MEETING, STREAM)
        one.ready(0)
        one.ack(3200)
        one.ack(4800)
        one.closed(1006)
        two = log.connection(MEETING, STREAM)
        two.ready(4800)
        two.ack(9600)
        two.closed(1000)
        silent = log.connection(MEETING, ids.stream_id(MEETING, "usr_ben"))
        silent.ready(0)  # acknowledged nothing: claims nothing
        other = log.connection("mtg_other", ids.stream_id("mtg_other", "usr_ana"))
        other.ready(0)
        other.ack(1600)
    ranges = acked_ranges(path.read_bytes().splitlines(), MEETING)
    assert [(r.stream_id, r.first_sample, r.acked) for r in ranges] == [(STREAM, 0, 4800), (STREAM, 4800, 9600)]
    assert ranges[0].connection == one.connection and ranges[1].connection == two.connection != one.connection
    assert acked_ranges(path.read_text().splitlines(), "mtg_other")[0].acked == 1600


@pytest.mark.parametrize(("line", "says"), [
    ("not json", "line 2: not an ack log record"),
    ('{"event": "ack", "meeting_id": "mtg_check"}', "line 2: not an ack log record"),
    ('{"event": "ack", "meeting_id": "mtg_check", "stream_id": "s", "connection": "x", "samples": 5}',
     "line 2: an ack of connection x before its ready"),
    ('{"event": "nack", "meeting_id": "mtg_check", "stream_id": "s", "connection": "x"}', "line 2: unknown event"),
])  # fmt: skip
def test_a_bad_ack_log_line_is_named(line: str, says: str) -> None:
    with pytest.raises(AckLogError, match=says):
        acked_ranges(["", line], MEETING)


def test_intervals() -> None:
    assert union([(5, 8), (0, 2), (2, 4), (7, 9), (3, 3)]) == [(0, 4), (5, 9)]
    assert missing((0, 10), [(2, 4), (6, 7)]) == [(0, 2), (4, 6), (7, 10)]
    assert missing((3, 5), [(0, 10)]) == [] and missing((3, 5), []) == [(3, 5)]


# --- audio -----------------------------------------------------------------------------------------------


def test_a_whole_stream_is_valid() -> None:
    topic = Topic()
    topic.connection(0, 10 * FRAME)
    verdict = check_audio(topic.audio, [acked(0, 10 * FRAME)])
    assert verdict.findings == [] and verdict.resent == 0
    assert verdict.checked == {"streams": 1, "frames": 10, "connections": 1, "acked connections": 1}


def test_acked_audio_missing_from_the_topic_is_lost() -> None:
    topic = Topic()
    topic.started(0)
    for at in range(0, 10 * FRAME, FRAME):
        if at != 3 * FRAME:  # the fault: a frame acknowledged to the client never reached the topic
            topic.frame(at)
    topic.stopped(10 * FRAME)
    (finding,) = check_audio(topic.audio, [acked(0, 10 * FRAME, "c7")]).findings
    assert finding.kind == ACKED_AUDIO_LOST
    assert finding.ids == {"stream_id": STREAM, "connection": "c7"}
    assert "samples 4800-6400" in finding.detail
    # Without the client's log the topic's own stream.stopped still says those samples were durable.
    (finding,) = check_audio(topic.audio, None).findings
    assert (finding.kind, finding.ids["connection"]) == (AUDIO_LOST, "0") and "samples 4800-6400" in finding.detail


def test_acks_beyond_what_the_topic_holds_are_lost() -> None:
    topic = Topic()
    topic.connection(0, 4 * FRAME, stop=False)  # the tail never reached the topic, though acknowledged
    (finding,) = check_audio(topic.audio, [acked(0, 6 * FRAME)]).findings
    assert finding.kind == ACKED_AUDIO_LOST and f"samples {4 * FRAME}-{6 * FRAME}" in finding.detail
    (finding,) = check_audio(AudioSeen(MEETING), [acked(0, FRAME)]).findings  # a stream the topic never saw
    assert finding.kind == ACKED_AUDIO_LOST and finding.ids["stream_id"] == STREAM


def test_a_frame_written_twice_in_one_connection_is_duplicated() -> None:
    topic = Topic()
    topic.started(0)
    for at in range(0, 5 * FRAME, FRAME):
        topic.frame(at)
        if at == 2 * FRAME:
            topic.frame(at)  # the fault: the same frame again, at the next offset
    topic.stopped(5 * FRAME)
    (finding,) = check_audio(topic.audio, [acked(0, 5 * FRAME)]).findings
    assert finding.kind == AUDIO_DUPLICATED
    assert finding.ids == {"stream_id": STREAM, "frames": "2@3,2@4"}
    assert "samples 3200-4800" in finding.detail and "in one connection" in finding.detail


def test_a_resume_sending_its_unacknowledged_frames_again_is_allowed() -> None:
    topic = Topic()
    topic.connection(0, 6 * FRAME, stop=False)  # dropped after 6 frames, 4 of them acknowledged
    topic.connection(4 * FRAME, 10 * FRAME)  # resumed at the ack: frames 4 and 5 again, the same audio
    verdict = check_audio(topic.audio, [acked(0, 4 * FRAME, "c1"), acked(4 * FRAME, 10 * FRAME, "c2")])
    assert verdict.findings == [] and verdict.resent == 2


def test_a_stream_moved_to_another_ingest_process_is_judged_by_connection_ids() -> None:
    """The old process lands its last frames and its stop after the new connection started: each belongs to
    the connection its id names, so the resent frames are a resume's, and the old stop ends the old one."""
    topic = Topic()
    topic.started(0, "0@1")
    for at in range(0, 4 * FRAME, FRAME):
        topic.frame(at, connection="0@1")
    topic.started(4 * FRAME, "0@2")  # the client's last ack was at 4 frames
    topic.frame(4 * FRAME, connection="0@2")
    topic.frame(4 * FRAME, connection="0@1")  # the old process's last frames and stop, late
    topic.frame(5 * FRAME, connection="0@1")
    topic.stopped(6 * FRAME, "0@1")
    for at in range(5 * FRAME, 10 * FRAME, FRAME):
        topic.frame(at, connection="0@2")
    topic.stopped(10 * FRAME, "0@2")
    verdict = check_audio(topic.audio, [acked(0, 4 * FRAME, "c1"), acked(4 * FRAME, 10 * FRAME, "c2")])
    assert verdict.findings == [] and verdict.resent == 2
    assert [(c.first_sample, c.end_sample) for c in topic.audio.connections[STREAM]] == [(0, 6 * FRAME), (4 * FRAME, 10 * FRAME)]
    # Without the ids the same records read as the new connection sending samples twice.
    bare = Topic()
    bare.connection(0, 4 * FRAME, stop=False)
    bare.started(4 * FRAME)
    bare.frame(4 * FRAME)
    bare.frame(4 * FRAME)
    assert "in one connection" in check_audio(bare.audio, None).findings[0].detail


def test_the_same_samples_with_other_audio_are_duplicated() -> None:
    topic = Topic()
    topic.connection(0, 6 * FRAME, stop=False)
    topic.started(4 * FRAME)
    topic.frame(4 * FRAME, PCM[:FRAME])  # the fault: other audio at samples the stream has
    for at in range(5 * FRAME, 10 * FRAME, FRAME):
        topic.frame(at)
    topic.stopped(10 * FRAME)
    (finding,) = check_audio(topic.audio, None).findings
    assert finding.kind == AUDIO_DUPLICATED and "with other audio: connections 0 and 1" in finding.detail
    # Frames cut at other places than the first connection's cannot be told apart from a conflict: reported.
    topic = Topic()
    topic.connection(0, 4 * FRAME, stop=False)
    topic.started(3 * FRAME)
    topic.frame(3 * FRAME + 800)
    (finding,) = check_audio(topic.audio, None).findings
    assert finding.kind == AUDIO_DUPLICATED and "in frames cut differently" in finding.detail


# --- utterances and dialogues -----------------------------------------------------------------------------

RUN = "whisper:tiny.en"
BEN = ids.stream_id(MEETING, "usr_ben")


def utterance(stream: str, start: int, end: int, where: str = "store") -> UtteranceSeen:
    return UtteranceSeen(ids.utterance_id(stream, start), RUN, stream, start, end, where)


U1, U2, U3 = utterance(STREAM, 0, 16000), utterance(STREAM, 20000, 30000), utterance(BEN, 32000, 48000)


def dialogue(first: UtteranceSeen, *more: UtteranceSeen, position: int, start_ms: int | None = None,
             status: str = "final", placed: bool = True) -> DialogueSeen:  # fmt: skip
    start = first.start_sample // 16 if start_ms is None else start_ms
    return DialogueSeen(ids.dialogue_id(MEETING, first.utterance_id), RUN, start, status, placed, position,
                        tuple(u.utterance_id for u in (first, *more)))  # fmt: skip


def on_topic(*utterances: UtteranceSeen) -> list[UtteranceSeen]:
    return [UtteranceSeen(u.utterance_id, u.run, u.stream_id, u.start_sample, u.end_sample, f"1@{i}")
            for i, u in enumerate(utterances)]  # fmt: skip


STORED = [U1, U2, U3]
DIALOGUES = [dialogue(U1, U2, position=0), dialogue(U3, position=1)]


def test_a_whole_transcript_is_valid() -> None:
    verdict = check_transcripts(STORED, on_topic(*STORED), DIALOGUES)
    assert verdict.findings == [] and verdict.notes == []
    assert verdict.checked == {"utterances stored": 3, "dialogues": 2, "runs": 1, "finals on the transcripts topic": 3}


def test_an_utterance_missing_from_the_store_is_lost() -> None:
    verdict = check_transcripts([U1, U3], on_topic(*STORED), DIALOGUES)  # the fault: U2's row is gone
    (finding,) = verdict.findings
    assert finding.kind == UTTERANCES_LOST and finding.ids == {"run": RUN, "utterance_id": U2.utterance_id}
    assert "final on the transcripts topic (1@1), not in the store" in finding.detail
    assert f"final dialogue {DIALOGUES[0].dialogue_id} holds it" in finding.detail


def test_a_final_in_no_dialogue_of_a_settled_run_is_lost() -> None:
    dialogues = [dialogue(U1, position=0), dialogue(U3, position=1)]  # the fault: U2 in no dialogue
    (finding,) = check_transcripts(STORED, on_topic(*STORED), dialogues).findings
    assert finding.kind == UTTERANCES_LOST and finding.ids["utterance_id"] == U2.utterance_id
    assert "in no dialogue" in finding.detail
    # Not judged while the meeting may still change: a stream goes on, or a dialogue is not placed yet.
    for verdict in (check_transcripts(STORED, on_topic(*STORED), dialogues, streams_live=True),
                    check_transcripts(STORED, on_topic(*STORED), [*dialogues[:1], dialogue(U3, position=1, placed=False)])):  # fmt: skip
        assert verdict.findings == [] and "not judged" in verdict.notes[0]


def test_the_same_samples_transcribed_twice_are_a_duplicate() -> None:
    again = utterance(STREAM, 8000, 18000)  # the fault: another id over samples U1 has
    (finding,) = check_transcripts([*STORED, again], on_topic(*STORED), DIALOGUES).findings
    assert finding.kind == UTTERANCES_DUPLICATED
    assert finding.ids == {"run": RUN, "stream_id": STREAM, "utterance_id": f"{U1.utterance_id},{again.utterance_id}"}
    assert "samples 8000-16000" in finding.detail
    # The same samples in another run are that run's (a replay), not a duplicate.
    replayed = UtteranceSeen(ids.utterance_id(STREAM, 8000), "whisper:tiny.en~replay", STREAM, 8000, 18000)
    assert check_transcripts([*STORED, replayed], None, DIALOGUES).findings == []


def test_an_utterance_in_two_final_dialogues_is_a_duplicate() -> None:
    dialogues = [dialogue(U1, U2, position=0), dialogue(U3, U2, position=1)]  # the fault: U2 twice
    (finding,) = check_transcripts(STORED, on_topic(*STORED), dialogues).findings
    assert finding.kind == UTTERANCES_DUPLICATED and finding.ids["utterance_id"] == U2.utterance_id
    assert "in 2 final dialogues" in finding.detail


def test_placed_dialogues_out_of_start_order_are_reported() -> None:
    swapped = [dialogue(U1, U2, position=1), dialogue(U3, position=0)]  # the fault: positions swapped
    (finding,) = check_transcripts(STORED, on_topic(*STORED), swapped).findings
    assert finding.kind == DIALOGUES_OUT_OF_ORDER
    assert finding.ids["dialogue_id"] == f"{swapped[1].dialogue_id},{swapped[0].dialogue_id}"
    assert "position 0 starts at 2000 ms, after position 1 at 0 ms" in finding.detail


def test_a_position_twice_or_none_is_out_of_order() -> None:
    twice = [dialogue(U1, U2, position=0), dialogue(U3, position=0)]
    (finding,) = check_transcripts(STORED, on_topic(*STORED), twice).findings
    assert finding.kind == DIALOGUES_OUT_OF_ORDER and "both placed at position 0" in finding.detail
    gap = [dialogue(U1, U2, position=0), dialogue(U3, position=2)]
    (finding,) = check_transcripts(STORED, on_topic(*STORED), gap).findings
    assert finding.kind == DIALOGUES_OUT_OF_ORDER and "no dialogue is placed at position(s) 1" in finding.detail


def test_retracted_and_live_dialogues_are_not_judged_as_placed() -> None:
    dialogues = [*DIALOGUES, dialogue(U2, position=0, status="retracted", placed=False)]
    assert check_transcripts(STORED, on_topic(*STORED), dialogues).findings == []


# --- the report ------------------------------------------------------------------------------------------


def test_the_report_names_each_anomaly_with_its_ids() -> None:
    topic = Topic()
    topic.connection(0, 2 * FRAME)
    sound = check_audio(topic.audio, [acked(0, 3 * FRAME)])
    text = check_transcripts([U1, U3], on_topic(*STORED), DIALOGUES)
    report = Report(MEETING, sound.findings + text.findings, {**sound.checked, **text.checked}, ["a note"])
    assert not report.valid and report.anomaly_types == [ACKED_AUDIO_LOST, UTTERANCES_LOST]
    shown = to_text(report)
    assert shown.startswith(f"meeting {MEETING}: INVALID: acked audio lost, utterances lost")
    assert f"stream_id={STREAM} connection=c1: samples 3200-4800" in shown
    assert f"utterance_id={U2.utterance_id}" in shown and "note: a note" in shown
    body = json.loads(json.dumps(to_json(report)))
    assert body["valid"] is False and body["anomaly_types"] == ["acked audio lost", "utterances lost"]
    assert body["anomalies"]["utterances lost"][0]["ids"]["utterance_id"] == U2.utterance_id
    assert to_text(Report(MEETING)).startswith(f"meeting {MEETING}: valid")


def test_check_refuses_bad_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--meeting", "mtg/x"]) == 2
    assert "'mtg/x' is not a meeting id" in capsys.readouterr().err
    assert main(["check", "--meeting", MEETING, "--client-log", str(tmp_path / "none.jsonl")]) == 2
    assert "--client-log" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    assert main(["check", "--meeting", MEETING, "--client-log", str(bad)]) == 2
    assert "line 1: not an ack log record" in capsys.readouterr().err


def test_the_help_names_every_anomaly_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(kind in out for kind in KINDS), out
    assert "Exit status: 0 valid, 1 anomalies found, 2 bad input" in out and "--client-log FILE" in out
    for command in (["demo", "--help"], ["bench", "ingest", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        assert "--client-log FILE" in capsys.readouterr().out
