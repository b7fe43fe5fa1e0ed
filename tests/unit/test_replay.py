"""Replay's pure parts: run ids, which settings a replay takes, what the scan makes of a meeting's records
and when audio may have expired, and a transcriber that makes only what the audio decides."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1, TranscriptFinalV1, decode, encode
from palaver.events.registry import AUDIO_FRAMES
from palaver.runs import is_replay, live_run, replay_run
from palaver.settings import Settings
from stt_workers.engine import Transcription, Word
from stt_workers.local_transcriber import LocalTranscriber
from stt_workers.processor import StreamInfo
from stt_workers.replay_scan import MeetingAudio, may_have_lost
from stt_workers.replay_settings import (
    REPLAY_MAX_BATCH,
    TRANSCRIPT_SETTINGS,
    ReplaySettingsError,
    parse_sets,
    replay_setup,
    run_of,
)
from stt_workers.transcriber import Decode
from stt_workers.vad import WINDOW

DAY = 24 * 3600 * 1000


# --- run ids ---------------------------------------------------------------------------------------------


def test_a_replay_run_is_named_by_engine_model_and_overrides_and_is_never_a_live_run() -> None:
    assert live_run("whisper", "tiny.en") == "whisper:tiny.en"
    assert replay_run("whisper", "tiny.en", {}) == "whisper:tiny.en~replay"
    two = replay_run("whisper", "tiny.en", {"whisper_beam_size": 2})
    assert two.startswith("whisper:tiny.en~") and len(two.rpartition("~")[2]) == 8
    assert two == replay_run("whisper", "tiny.en", {"whisper_beam_size": 2}), "the same overrides, the same run"
    both = {"whisper_beam_size": 2, "vad_threshold": 0.6}
    assert replay_run("whisper", "tiny.en", both) == replay_run("whisper", "tiny.en", dict(reversed(both.items())))
    assert len({two, replay_run("whisper", "tiny.en", {"whisper_beam_size": 3}),
                replay_run("whisper", "small.en", {"whisper_beam_size": 2}), replay_run("whisper", "tiny.en", both)}) == 4  # fmt: skip
    assert all(is_replay(r) for r in (two, replay_run("whisper", "tiny.en", {})))
    assert not is_replay("whisper:tiny.en") and not is_replay("deepgram:nova-3")


def test_overrides_name_the_run_by_their_typed_values() -> None:
    base = Settings()
    one = replay_setup(base, parse_sets(["vad_threshold=0.50", "whisper_beam_size=2"]))
    other = replay_setup(base, parse_sets(["whisper_beam_size=2", "vad_threshold=.5"]))
    assert one.overrides == other.overrides == {"vad_threshold": 0.5, "whisper_beam_size": 2}
    assert run_of(one, "tiny.en") == run_of(other, "tiny.en")
    assert run_of(replay_setup(base, {}), "tiny.en") == "whisper:tiny.en~replay"
    assert parse_sets(["a=1", "a=2"]) == {"a": "2"}, "a later --set of a key wins"


def test_the_settings_a_replay_runs_with() -> None:
    base = Settings(vad_pad_ms=150, whisper_threads=3)
    setup = replay_setup(base, {"whisper_beam_size": "2"}, engine="whisper", model_dir="/models/small.en", lanes=1)
    s = setup.settings
    assert (s.whisper_beam_size, s.vad_pad_ms, s.whisper_threads, s.stt_decode_lanes) == (2, 150, 3, 1)
    assert s.whisper_model_dir == "/models/small.en" and s.stt_max_batch == REPLAY_MAX_BATCH == 1
    assert replay_setup(base, {}, threads=2).settings.whisper_threads == 2
    assert setup.overrides == {"whisper_beam_size": 2}, "threads, lanes and the model are not overrides"


@pytest.mark.parametrize(("sets", "engine", "message"), [
    ({"merger_pause_ms": "900"}, None, r"merge the transcripts again with it \(--from transcripts\)"),
    ({"vad_eager_silence_ms": "200"}, None, "shapes live decoding"),
    ({"stt_max_batch": "4"}, None, "shapes live decoding"),
    ({"whisper_threads": "4"}, None, "use --threads"),
    ({"stt_decode_lanes": "1"}, None, "use --lanes"),
    ({"api_port": "80"}, None, "api_port: not an STT or merger setting; a replay takes whisper_beam_size"),
    ({"no_such": "1"}, None, "no_such: no such setting"),
    ({"vad_threshold": "loud"}, None, "vad_threshold: Input should be a valid number"),
    ({"whisper_decode": "fast"}, None, "whisper_decode: Input should be 'aligned' or 'timestamps'"),
    ({}, "deepgram", "whisper only"),
])  # fmt: skip
def test_a_replay_refuses_what_it_cannot_take_saying_why(sets: dict[str, str], engine: str | None, message: str) -> None:
    with pytest.raises(ReplaySettingsError, match=message):
        replay_setup(Settings(), sets, engine=engine)


def test_bad_set_items_and_resources_are_refused() -> None:
    with pytest.raises(ReplaySettingsError, match="expected KEY=VALUE"):
        parse_sets(["vad_threshold"])
    with pytest.raises(ReplaySettingsError, match="--lanes 0: at least 1"):
        replay_setup(Settings(), {}, lanes=0)
    assert all(name in Settings.model_fields for name in TRANSCRIPT_SETTINGS)


# --- the scan ----------------------------------------------------------------------------------------------


def _record(offset: int, stream: str, value: bytes, headers: list[tuple[str, bytes]], partition: int = 2) -> ConsumerRecord:
    return ConsumerRecord("ns.audio.frames", partition, offset, 0, 0, stream.encode(), value, None, 0, len(value),
                          tuple(headers))  # fmt: skip


def _started(stream: str, first_sample: int = 0) -> ConsumerRecord:
    meeting, speaker = stream.split("/")
    event = StreamStartedV1(event_id=f"evt_s{first_sample}", meeting_id=meeting, speaker_id=speaker, stream_id=stream,
                            sample_rate=16000, stream_start_ms=0, first_sample=first_sample)  # fmt: skip
    return _record(0, stream, encode(event), [("event", b"stream.started"), ("version", b"1")])


def _stopped(stream: str, end_sample: int) -> ConsumerRecord:
    meeting, speaker = stream.split("/")
    event = StreamStoppedV1(event_id="evt_t", meeting_id=meeting, speaker_id=speaker, stream_id=stream,
                            stream_start_ms=0, end_sample=end_sample, reason="end")  # fmt: skip
    return _record(0, stream, encode(event), [("event", b"stream.stopped"), ("version", b"1")])


def _frame(stream: str, first_sample: int, samples: int = 1600) -> ConsumerRecord:
    meeting, speaker = stream.split("/")
    frame = AudioFrameV1(meeting, speaker, stream, 16000, first_sample, 0, bytes(2 * samples))
    return _record(0, stream, frame.pcm, frame.kafka_headers())


def _at(record: ConsumerRecord, offset: int) -> ConsumerRecord:
    return dataclasses.replace(record, offset=offset)


def test_the_scan_keeps_the_meetings_offsets_and_what_each_stream_holds() -> None:
    audio = MeetingAudio("m1")
    records = [_started("m1/ana"), _frame("m1/ana", 0), _frame("m1/ana", 1600), _started("m1/bo"),
               _frame("m1/bo", 0, 8000), _stopped("m1/ana", 3200)]  # fmt: skip
    for offset, record in zip((10, 11, 14, 15, 20, 21), records, strict=True):
        audio.note(_at(record, offset))
    assert list(audio.ranges.values()) == [(10, 22)]
    assert audio.streams["m1/ana"].samples == 3200 and audio.streams["m1/ana"].stopped
    assert audio.streams["m1/bo"].samples == 8000 and not audio.streams["m1/bo"].stopped
    assert audio.seconds == pytest.approx(0.7) and audio.live, "bo has not stopped: the meeting is live"
    assert audio.lost_beginnings() == {}


def test_a_stream_that_does_not_begin_with_its_start_at_sample_zero_lost_its_beginning() -> None:
    audio = MeetingAudio("m1")
    for offset, record in enumerate([_frame("m1/ana", 48000), _started("m1/bo", 16000), _started("m1/cy"),
                                     _started("m1/cy", 32000)]):  # fmt: skip
        audio.note(_at(record, offset))
    assert audio.lost_beginnings() == {"m1/ana": 48000, "m1/bo": 16000}, "a later session of cy is fine"


def test_a_partition_may_have_lost_a_meetings_audio_only_past_the_retention() -> None:
    now, week = 100 * DAY, AUDIO_FRAMES.retention_ms
    old = now - week - DAY  # a meeting that began before the retention's horizon
    assert may_have_lost(old, now, week, beginning=500, first_since=500), "nothing older left: may be lost"
    assert not may_have_lost(old, now, week, beginning=500, first_since=800), "older records are left"
    assert not may_have_lost(old, now, week, beginning=0, first_since=0), "nothing was ever deleted"
    assert not may_have_lost(old, now, week, beginning=500, first_since=None), "nothing since: nothing of it"
    assert not may_have_lost(now - DAY, now, week, beginning=500, first_since=500), "too recent to be deleted"
    assert not may_have_lost(old, now, -1, beginning=500, first_since=500), "kept forever"


# --- the transcriber, as a replay runs it ----------------------------------------------------------------

RATE = 16000
FRAME = RATE // 10
INFO = StreamInfo("m1", "ana", "m1/ana", RATE, 0)


def _loud(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    return np.where(np.abs(windows[:, -WINDOW:]).mean(axis=1) > 0.05, 0.9, 0.0).astype(np.float32), state


class _Whisper:
    name, model, multilingual = "whisper", "tiny.en", False

    def decode(
        self, batch: list[np.ndarray], language: str, with_words: list[bool], prompts: object = None, vocabulary: str = ""
    ) -> list[Transcription]:
        return [Transcription(f"{len(a)} samples", (Word(str(len(a)), 0.1, 0.4, 0.9),), 0.9) for a in batch]


async def _transcribe(t: LocalTranscriber, audio: np.ndarray, round_every: int) -> list[object]:
    """Feed ``audio`` frame by frame, a publish round every ``round_every`` frames and at the end."""
    published: list[object] = []

    async def round_() -> None:
        items = [item for _, item in t.take()]
        decodes = [item for item in items if isinstance(item, Decode)]
        results: dict[int, Transcription | None] = {}
        if decodes:
            async for index, result in t.decode(decodes):
                results[index] = result
        for item in items:
            value = t.event(item, results[decodes.index(item)]) if isinstance(item, Decode) else item
            if value is not None:
                published.append(decode(value.value))

    await t.open(INFO, 0, 0)
    for n, at in enumerate(range(0, len(audio), FRAME)):
        pcm = (audio[at : at + FRAME] * 32767).astype("<i2").tobytes()
        await t.audio(AudioFrameV1("m1", "ana", "m1/ana", RATE, at, 0, pcm), SimpleNamespace(offset=n, timestamp=0))  # type: ignore[arg-type]
        t.after_batch({"m1/ana"})
        if n % round_every == 0:
            await round_()
    await round_()
    await t.close()
    return published


def _speech() -> np.ndarray:
    audio = np.zeros(6 * RATE, np.float32)
    for start, end in ((0.3, 1.8), (2.8, 4.6)):
        audio[int(start * RATE) : int(end * RATE)] = 0.25
    return audio


async def test_a_replay_transcriber_makes_only_finals_of_its_run_the_same_however_it_is_timed() -> None:
    run = "whisper:tiny.en~0badcafe"
    eager = await _transcribe(LocalTranscriber(Settings(), _Whisper(), _loud, run=run, live=False), _speech(), 1)  # type: ignore[arg-type]
    late = await _transcribe(LocalTranscriber(Settings(), _Whisper(), _loud, run=run, live=False), _speech(), 1000)  # type: ignore[arg-type]
    assert eager and all(isinstance(e, TranscriptFinalV1) for e in eager), "no partials, no progress"
    assert [e.model_dump() for e in eager] == [e.model_dump() for e in late], "timing changes nothing"
    assert {e.run for e in eager} == {run}  # type: ignore[attr-defined]
    live = await _transcribe(LocalTranscriber(Settings(), _Whisper(), _loud), _speech(), 1)  # type: ignore[arg-type]
    live_finals = [e for e in live if isinstance(e, TranscriptFinalV1)]
    assert len(live) > len(live_finals), "the live pass also makes partials and progress"
    assert [e.utterance_id for e in live_finals] == [e.utterance_id for e in eager]  # type: ignore[attr-defined]
    assert {e.run for e in live_finals} == {"whisper:tiny.en"}
    assert not {e.event_id for e in live_finals} & {e.event_id for e in eager}, "another run, other event ids"  # type: ignore[attr-defined]


def test_the_progress_bar_draws_on_its_stream_and_ends_its_line() -> None:
    import io

    from palaver.progress import Progress

    out = io.StringIO()
    bar = Progress("transcribing", 20.0, "s of audio", out=out)
    bar.update(5.0, "3.0x real time")
    bar.update(20.0)
    bar.close()
    lines = out.getvalue().split("\r")
    assert lines[1].startswith("transcribing [#######.......................] 5/20 s of audio 3.0x real time")
    assert lines[2].startswith(f"transcribing [{'#' * 30}] 20/20 s of audio") and out.getvalue().endswith("\n")
    quiet = io.StringIO()
    Progress("x", 1, quiet=True, out=quiet).update(1)
    assert quiet.getvalue() == ""
