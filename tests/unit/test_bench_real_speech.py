"""The real-speech bench's sources: where their files are kept, and how a track is assembled from its parts."""

import wave
from pathlib import Path

import numpy as np

from bench.real_speech import SOURCES, Track, clean, load_track, track_files, with_left_context, words_after
from stt_workers.engine import Transcription, Word


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.astype(np.int16).tobytes())


def test_every_part_of_every_source_is_kept_under_its_own_file_name() -> None:
    files = [f for _, tracks in SOURCES.values() for t in tracks for pair in track_files(t) for f in pair]
    assert len(files) == len(set(files))
    assert all(f.suffix in (".wav", ".flac", ".lab", ".txt") for f in files)


def test_a_track_plays_its_parts_in_order_and_joins_their_transcripts(tmp_path: Path) -> None:
    track = Track("two", "pkg==1", (("a/one.wav", "a/one.txt"), ("b/two.wav", "b/two.lab")))
    _write_wav(tmp_path / "one.wav", np.full(1600, 1000))
    _write_wav(tmp_path / "two.wav", np.full(3200, -2000))
    (tmp_path / "one.txt").write_text("Hello [noise] um there\n")
    (tmp_path / "two.lab").write_text("GENERAL Kenobi")

    audio, reference = load_track(track, tmp_path)

    assert len(audio) == 4800
    assert np.all(audio[:1600] > 0) and np.all(audio[1600:] < 0)
    assert reference == "hello there general kenobi" == clean("hello there general kenobi")


def test_left_context_is_the_track_just_before_each_piece_within_the_track_and_the_clip_limit() -> None:
    audio = np.arange(16000 * 40, dtype=np.float32)
    pieces = [(8000, 24000, audio[8000:24000]), (16000 * 30, 16000 * 39, audio[16000 * 30 : 16000 * 39])]

    clips = with_left_context(audio, pieces, 2.0, longest_s=10.0)

    assert clips[0][0] == 0.5 and np.array_equal(clips[0][1], audio[:24000])  # the track starts sooner
    assert clips[1][0] == 1.0 and np.array_equal(clips[1][1], audio[16000 * 29 : 16000 * 39])  # 10 s at most


def test_the_words_of_the_context_are_dropped_by_their_middle() -> None:
    words = (Word("so", 0.2, 0.6, 0.9), Word("we", 0.8, 1.3, 0.9), Word("met", 1.4, 1.9, 0.9))
    final = Transcription(text=" so we met", words=words, confidence=0.9)

    assert words_after(final, 1.0) == "we met"
    assert words_after(final, 1.1) == "met"
    assert words_after(final, 0.0) == "so we met"


def test_streamed_tracks_cycle_through_the_recordings_with_silence_around_them(tmp_path: Path) -> None:
    import pytest

    from bench import real_speech
    from bench.speech import LEAD_MS, TAIL_MS

    with pytest.raises(real_speech.NotFetched, match="--fetch"):
        real_speech.stream_tracks(2, tmp_path)
    recordings = [t for _, tracks in SOURCES.values() for t in tracks]
    for index, track in enumerate(recordings):
        for audio, text in track_files(track, tmp_path):
            _write_wav(audio, np.full(1600, 1000 * (index + 1)))
            text.write_text(f"Word{index} um [noise]\n")
    tracks = real_speech.stream_tracks(len(recordings) + 1, tmp_path)
    scripts = [" ".join([f"word{i}"] * len(t.parts)) for i, t in enumerate(recordings)]  # each part's text
    assert [t.script for t in tracks] == [*scripts, scripts[0]]
    lead, tail = LEAD_MS * 16, TAIL_MS * 16
    first = tracks[0].pcm
    assert not first[:lead].any() and not first[len(first) - tail :].any() and first[lead] > 0
    assert len(first) == lead + 1600 * len(recordings[0].parts) + tail
    assert tracks[0].recorded and tracks[0].wer("Uh, WORD0.") == 0.0, "a filled pause is not an error"


def test_a_synthesized_track_counts_every_word_it_is_given() -> None:
    from bench.speech import Track as SpeechTrack

    assert SpeechTrack("s0", np.zeros(1, np.int16), "hello there").wer("um hello there") == 0.5


def test_settle_spans_join_consecutive_finals_with_their_gaps_up_to_the_limit() -> None:
    from bench.real_speech import settle_spans

    audio = np.arange(40 * 16000, dtype=np.float32)
    second = 16000
    pieces = [(s * second, e * second, audio[s * second : e * second]) for s, e in ((0, 4), (5, 9), (10, 14), (15, 31))]
    spans = settle_spans(audio, pieces, 10)
    assert [(s // second, e // second) for s, e, _ in spans] == [(0, 9), (10, 14), (15, 31)], "a long final stays alone"
    assert all(np.array_equal(clip, audio[s:e]) for s, e, clip in spans), "the gaps between finals are heard"


def test_a_final_that_starts_where_the_previous_ended_gets_its_pre_roll_back_as_overlap() -> None:
    from bench.seams import seam_clips
    from stt_workers.segmenter import Segment

    audio = np.arange(100, dtype=np.float32)

    def segment(start: int, end: int, speech: int) -> Segment:
        return Segment(start, end, speech, audio[start:end])

    segments = [segment(10, 40, 20), segment(40, 60, 45), segment(70, 90, 80), segment(90, 99, 92)]
    clips = seam_clips(audio, segments, pad=10)
    assert [(len(c), overlap * 16000, clipped) for c, overlap, clipped in clips] == [
        (30, 0, False),  # the first
        (25, 5, True),  # started 5 before its speech at the previous end: 10 before it instead
        (20, 0, False),  # a gap before it: its own pre-roll
        (17, 8, True),  # 10 before its speech: the last 8 of the previous final's audio
    ]
    assert np.array_equal(clips[1][0], audio[35:60])
