"""Voice-activity segmentation (stt_workers/segmenter.py) and per-stream processing (stt_workers/processor.py),
with a fake scorer: a window is speech (0.9) when the mean |x| of its own 512 samples exceeds 0.05."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import cycle, pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from palaver import ids
from palaver.events import AudioFrameV1, TranscriptFinalV1
from stt_workers.engine import Transcription, Word
from stt_workers.processor import MAX_GAP_SAMPLES, StreamInfo, StreamState, final_event, pcm_to_float
from stt_workers.segmenter import Segment, Segmenter, SegmenterPolicy
from stt_workers.vad import CONTEXT, WINDOW

RATE = 16000
DEFAULT = SegmenterPolicy()
PAD = DEFAULT.samples(DEFAULT.pad_ms)  # 3200
RESET_EVERY = DEFAULT.samples(DEFAULT.state_reset_ms)  # 16384: whole windows
MIN_SILENCE_WINDOWS = -(-DEFAULT.samples(DEFAULT.min_silence_ms) // WINDOW)  # 19 quiet windows end speech


def loudness_scorer(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    assert windows.ndim == 2 and windows.shape[1] == CONTEXT + WINDOW
    assert windows.dtype == np.float32
    return np.where(np.abs(windows[:, -WINDOW:]).mean(axis=1) > 0.05, 0.9, 0.0).astype(np.float32), state


def track(n_windows: int, bursts: Iterable[tuple[int, int]], offset: int = 0) -> np.ndarray:
    """Silence with 440 Hz bursts; each burst spans whole windows [a, b) of the absolute timeline.
    ``offset`` is the absolute sample of the returned array's first sample."""
    audio = np.zeros(n_windows * WINDOW - offset, np.float32)
    for a, b in bursts:
        at = np.arange(a * WINDOW, b * WINDOW)
        audio[a * WINDOW - offset : b * WINDOW - offset] = 0.5 * np.sin(2 * np.pi * 440 * at / RATE)
    return audio


def feed(
    audio: np.ndarray, sizes: Sequence[int], policy: SegmenterPolicy = DEFAULT, first_sample: int = 0
) -> tuple[list[Segment], Segmenter]:
    seg = Segmenter(loudness_scorer, policy, first_sample)
    out: list[Segment] = []
    at = 0
    for size in cycle(sizes):
        if at >= len(audio):
            break
        out += seg.push(audio[at : at + size])
        at += size
    out += seg.flush()
    return out, seg


def bounds(segments: list[Segment]) -> list[tuple[int, int, int]]:
    return [(s.start_sample, s.end_sample, s.speech_start_sample) for s in segments]


def assert_audio_matches(segments: list[Segment], audio: np.ndarray, offset: int = 0) -> None:
    for s in segments:
        assert s.audio.dtype == np.float32
        assert len(s.audio) == s.end_sample - s.start_sample
        np.testing.assert_array_equal(s.audio, audio[s.start_sample - offset : s.end_sample - offset])


# --- segments --------------------------------------------------------------------------------------------


def test_silence_gives_no_segments() -> None:
    segments, seg = feed(np.zeros(10 * RATE, np.float32), [320])
    assert segments == []
    assert not seg.in_speech
    assert seg.end_sample == 10 * RATE


def test_one_segment_per_burst() -> None:
    audio = track(320, [(20, 60), (120, 180)])
    segments, _ = feed(audio, [320])
    assert bounds(segments) == [
        (20 * WINDOW - PAD, 60 * WINDOW + PAD, 20 * WINDOW),
        (120 * WINDOW - PAD, 180 * WINDOW + PAD, 120 * WINDOW),
    ]
    assert_audio_matches(segments, audio)


def test_segments_are_returned_as_soon_as_silence_is_long_enough() -> None:
    audio = track(100, [(20, 60)])
    seg = Segmenter(loudness_scorer, DEFAULT)
    assert seg.push(audio[: (60 + MIN_SILENCE_WINDOWS - 1) * WINDOW]) == []
    assert seg.in_speech
    (segment,) = seg.push(
        audio[(60 + MIN_SILENCE_WINDOWS - 1) * WINDOW : (60 + MIN_SILENCE_WINDOWS) * WINDOW]
    )
    assert (segment.start_sample, segment.end_sample) == (20 * WINDOW - PAD, 60 * WINDOW + PAD)
    assert not seg.in_speech


def test_short_gap_does_not_split() -> None:
    audio = track(200, [(20, 60), (70, 110)])  # 320 ms gap < 600 ms
    segments, _ = feed(audio, [512])
    assert bounds(segments) == [(20 * WINDOW - PAD, 110 * WINDOW + PAD, 20 * WINDOW)]
    assert_audio_matches(segments, audio)


@pytest.mark.parametrize(("gap_windows", "count"), [(MIN_SILENCE_WINDOWS - 1, 1), (MIN_SILENCE_WINDOWS, 2)])
def test_gap_at_min_silence_boundary(gap_windows: int, count: int) -> None:
    assert (
        (MIN_SILENCE_WINDOWS - 1) * WINDOW
        < DEFAULT.samples(DEFAULT.min_silence_ms)
        <= MIN_SILENCE_WINDOWS * WINDOW
    )
    audio = track(200, [(20, 60), (60 + gap_windows, 120)])
    segments, _ = feed(audio, [1000])
    assert len(segments) == count


def test_too_short_burst_is_dropped_without_padding() -> None:
    policy = SegmenterPolicy(pad_ms=0)  # min_speech_ms=200: 6 windows (192 ms) too short, 7 (224 ms) enough
    audio = track(200, [(20, 26), (80, 87)])
    segments, _ = feed(audio, [320], policy)
    assert bounds(segments) == [(80 * WINDOW, 87 * WINDOW, 80 * WINDOW)]


def test_too_short_burst_is_dropped_with_default_policy() -> None:
    """A 96 ms click is shorter than min_speech_ms (200 ms) and must not become an utterance.
    The padding added after the speech must not count as speech."""
    audio = track(200, [(20, 23)])
    segments, _ = feed(audio, [320])
    assert bounds(segments) == []


def test_flush_closes_open_utterance() -> None:
    audio = track(65, [(20, 60)])  # stream ends 160 ms after the speech, before the pad and min silence
    seg = Segmenter(loudness_scorer, DEFAULT)
    assert seg.push(audio) == []
    assert seg.in_speech
    (segment,) = seg.flush()
    assert (segment.start_sample, segment.end_sample, segment.speech_start_sample) == (
        20 * WINDOW - PAD,
        65 * WINDOW,  # the pad is cut at the end of the audio
        20 * WINDOW,
    )
    assert_audio_matches([segment], audio)
    assert not seg.in_speech
    assert seg.flush() == []


def test_flush_pads_when_audio_allows() -> None:
    audio = track(75, [(20, 60)])
    seg = Segmenter(loudness_scorer, DEFAULT)
    assert seg.push(audio) == []
    (segment,) = seg.flush()
    assert segment.end_sample == 60 * WINDOW + PAD


def test_flush_in_silence_returns_nothing() -> None:
    seg = Segmenter(loudness_scorer, DEFAULT)
    seg.push(np.zeros(RATE, np.float32))
    assert seg.flush() == []


def test_max_utterance_cuts_long_speech_without_pauses() -> None:
    policy = SegmenterPolicy(max_utterance_ms=3000)
    limit = policy.samples(policy.max_utterance_ms)
    audio = track(400, [(10, 300)])
    segments, _ = feed(audio, [320], policy)
    assert len(segments) >= 3
    assert segments[0].start_sample == 10 * WINDOW - PAD
    assert segments[-1].end_sample == 300 * WINDOW + PAD
    for before, after in pairwise(segments):
        assert after.start_sample == before.end_sample  # contiguous: no audio lost, none decoded twice
        assert after.speech_start_sample == after.start_sample
    for s in segments[:-1]:
        assert limit <= s.end_sample - s.speech_start_sample < limit + WINDOW
    assert_audio_matches(segments, audio)


def test_max_utterance_cuts_at_a_quiet_dip_in_the_last_third() -> None:
    policy = SegmenterPolicy(max_utterance_ms=3000)
    limit = policy.samples(policy.max_utterance_ms)
    audio = track(400, [(10, 80), (84, 300)])  # a 128 ms dip: too short to end the utterance
    segments, _ = feed(audio, [333], policy)
    first = segments[0]
    assert 80 * WINDOW <= first.end_sample < 84 * WINDOW
    assert first.end_sample - first.speech_start_sample >= limit * 2 // 3
    assert segments[1].start_sample == first.end_sample
    assert_audio_matches(segments, audio)


@pytest.mark.parametrize("pause_ms", [96, 160, None])
def test_a_long_utterance_is_cut_as_speech_resumes_after_a_pause_in_its_last_third(pause_ms: int | None) -> None:
    """With ``long_cut_pause_ms``, cut at the first pause that long and told at once, not when the length runs
    out: the final is asked for a moment after its last word. A shorter pause, or None: the quietest window
    of the last third, told when the length runs out."""
    policy = SegmenterPolicy(max_utterance_ms=3000, long_cut_pause_ms=pause_ms)
    limit_windows = policy.samples(policy.max_utterance_ms) // WINDOW  # 93
    audio = track(400, [(10, 50), (53, 80), (84, 300)])  # pauses at 50 (first third), 80 (last third, 128 ms)
    seg = Segmenter(loudness_scorer, policy)
    told_at = None
    for at in range(0, len(audio), WINDOW):
        if seg.push(audio[at : at + WINDOW]):
            told_at = (at + WINDOW) // WINDOW  # windows pushed when the first segment came
            break
    assert told_at is not None
    segments, _ = feed(audio, [320], policy)
    assert 80 * WINDOW <= segments[0].end_sample < 84 * WINDOW, "cut in the pause of the last third"
    if pause_ms is not None and pause_ms <= 128:
        assert told_at <= 84 + CONTEXT // WINDOW + 2, told_at
    else:
        assert told_at >= 10 + limit_windows, told_at


def test_padding_bounds_and_no_overlap_with_previous_segment() -> None:
    policy = SegmenterPolicy(pad_ms=400, min_silence_ms=500)
    pad = policy.samples(policy.pad_ms)
    audio = track(200, [(20, 60), (76, 110)])  # gap 16 windows >= 500 ms, but < two pads
    segments, _ = feed(audio, [320], policy)
    assert bounds(segments) == [
        (20 * WINDOW - pad, 60 * WINDOW + pad, 20 * WINDOW),
        (60 * WINDOW + pad, 110 * WINDOW + pad, 76 * WINDOW),  # pre-roll stops at the previous end
    ]
    assert_audio_matches(segments, audio)


def test_padding_clipped_at_stream_start() -> None:
    audio = track(100, [(2, 40)])
    segments, _ = feed(audio, [320])
    assert bounds(segments) == [(0, 40 * WINDOW + PAD, 2 * WINDOW)]


def test_padding_clipped_at_unaligned_first_sample() -> None:
    first = 1000
    audio = track(100, [(3, 40)], offset=first)
    segments, _ = feed(audio, [320], first_sample=first)
    assert bounds(segments) == [(first, 40 * WINDOW + PAD, 3 * WINDOW)]
    assert_audio_matches(segments, audio, offset=first)


def test_unaligned_first_sample_keeps_absolute_boundaries() -> None:
    """A segmenter restarted mid-stream (after a crash, at a frame's first sample) finds the same
    boundaries, hence the same utterance ids, as one that saw the stream from sample 0."""
    full = track(400, [(40, 90), (150, 200), (260, 330)])
    from_zero, _ = feed(full, [320])
    for first in (1000, 4800, 5120, 9999):
        resumed, _ = feed(full[first:], [320], first_sample=first)
        assert bounds(resumed) == bounds(from_zero)


# --- framing invariance ----------------------------------------------------------------------------------

SCENE = track(700, [(20, 60), (70, 110), (200, 203), (260, 420), (424, 600), (640, 700)])
SCENE_POLICY = SegmenterPolicy(max_utterance_ms=4000)


@pytest.fixture(scope="module")
def scene_reference() -> list[tuple[int, int, int]]:
    segments, _ = feed(SCENE, [len(SCENE)], SCENE_POLICY)
    assert len(segments) >= 4
    return bounds(segments)


@pytest.mark.parametrize(
    "sizes", [[97], [320], [333], [512], [1000], [4096], [8000], [160, 7, 2500, 511, 513]]
)
def test_boundaries_do_not_depend_on_frame_size(
    sizes: list[int], scene_reference: list[tuple[int, int, int]]
) -> None:
    segments, _ = feed(SCENE, sizes, SCENE_POLICY)
    assert bounds(segments) == scene_reference
    assert_audio_matches(segments, SCENE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=40, max_value=9000), min_size=1, max_size=12))
def test_boundaries_do_not_depend_on_framing_property(
    sizes: list[int], scene_reference: list[tuple[int, int, int]]
) -> None:
    segments, _ = feed(SCENE, sizes, SCENE_POLICY)
    assert bounds(segments) == scene_reference


def test_boundaries_do_not_depend_on_framing_when_pad_exceeds_min_silence() -> None:
    """The module promises framing-independent boundaries for any policy. With pad_ms (400) longer than
    min_silence_ms (300), the padded end is clipped to whatever audio had arrived when the silence was
    detected, so it depends on frame size."""
    policy = SegmenterPolicy(pad_ms=400, min_silence_ms=300)
    audio = track(200, [(20, 60), (70, 110)])
    whole, _ = feed(audio, [len(audio)], policy)
    framed, _ = feed(audio, [512], policy)
    assert bounds(framed) == bounds(whole)


# --- hysteresis and padding ------------------------------------------------------------------------------


def level_scorer(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    """A window's probability is the amplitude of its own samples (max |x|): a level sets it exactly."""
    return np.abs(windows[:, -WINDOW:]).max(axis=1).astype(np.float32), state


def levels(n_windows: int, spans: Iterable[tuple[int, int, float]]) -> np.ndarray:
    """Silence with constant-amplitude spans [a, b) of whole windows at a level (the fake probability)."""
    audio = np.zeros(n_windows * WINDOW, np.float32)
    for a, b, level in spans:
        audio[a * WINDOW : b * WINDOW] = level
    return audio


def cut(audio: np.ndarray, policy: SegmenterPolicy, sizes: Sequence[int] = (320,)) -> list[tuple[int, int, int]]:
    seg = Segmenter(level_scorer, policy)
    out: list[Segment] = []
    at = 0
    for size in cycle(sizes):
        if at >= len(audio):
            break
        out += seg.push(audio[at : at + size])
        at += size
    return bounds(out + seg.flush())


def test_hysteresis_keeps_speech_that_fades_below_the_threshold() -> None:
    """Speech at 0.9, then 40 windows (1.28 s, longer than the minimum silence) at 0.4: without
    hysteresis the utterance ends with the 0.9 part; with 0.15 the fading part (0.4 >= 0.5 - 0.15) is
    speech too, and only the silence after it ends the utterance."""
    audio = levels(200, [(20, 40, 0.9), (40, 80, 0.4)])
    plain = SegmenterPolicy(pad_ms=0, min_silence_ms=500)
    assert cut(audio, plain) == [(20 * WINDOW, 40 * WINDOW, 20 * WINDOW)]
    assert cut(audio, SegmenterPolicy(pad_ms=0, min_silence_ms=500, hysteresis=0.15)) == [
        (20 * WINDOW, 80 * WINDOW, 20 * WINDOW)
    ]


def test_hysteresis_does_not_start_speech() -> None:
    """Windows between threshold - hysteresis and the threshold never start an utterance."""
    audio = levels(200, [(20, 80, 0.4)])
    assert cut(audio, SegmenterPolicy(hysteresis=0.15)) == []


def test_speech_below_threshold_minus_hysteresis_counts_as_silence() -> None:
    """0.3 < 0.5 - 0.15: the gap of 40 windows at 0.3 splits the speech as silence would."""
    audio = levels(300, [(20, 40, 0.9), (40, 80, 0.3), (80, 100, 0.9)])
    policy = SegmenterPolicy(pad_ms=0, min_silence_ms=500, hysteresis=0.15)
    assert cut(audio, policy) == [(20 * WINDOW, 40 * WINDOW, 20 * WINDOW), (80 * WINDOW, 100 * WINDOW, 80 * WINDOW)]


def test_trailing_pad_apart_from_pre_roll() -> None:
    policy = SegmenterPolicy(pad_ms=400, trailing_pad_ms=300, min_silence_ms=500)
    audio = levels(200, [(40, 80, 0.9)])
    pre, trailing = policy.samples(400), policy.samples(300)
    assert cut(audio, policy) == [(40 * WINDOW - pre, 80 * WINDOW + trailing, 40 * WINDOW)]


def test_trailing_pad_never_longer_than_the_silence_that_ends_speech() -> None:
    policy = SegmenterPolicy(pad_ms=200, trailing_pad_ms=800, min_silence_ms=500)
    audio = levels(200, [(40, 80, 0.9)])
    assert cut(audio, policy)[0][1] == 80 * WINDOW + policy.samples(500)


@pytest.mark.parametrize("sizes", [[97], [333], [4096], [160, 7, 2500, 511, 513]])
def test_hysteresis_and_pads_do_not_depend_on_framing(sizes: list[int]) -> None:
    policy = SegmenterPolicy(threshold=0.3, hysteresis=0.15, pad_ms=400, trailing_pad_ms=300, min_silence_ms=500)
    audio = levels(400, [(20, 40, 0.9), (40, 70, 0.2), (70, 75, 0.1), (75, 90, 0.5), (150, 200, 0.35),
                         (200, 230, 0.16), (300, 320, 0.9)])  # fmt: skip
    whole = cut(audio, policy, [len(audio)])
    assert len(whole) == 3
    assert cut(audio, policy, sizes) == whole


def test_ending_segment_with_hysteresis_is_the_segment_push_returns() -> None:
    policy = SegmenterPolicy(hysteresis=0.15, pad_ms=400, trailing_pad_ms=300, min_silence_ms=500,
                             eager_silence_ms=300)  # fmt: skip
    audio = levels(200, [(20, 40, 0.9), (40, 60, 0.4)])
    seg = Segmenter(level_scorer, policy)
    told = None
    for at in range(0, len(audio), 320):
        pushed = seg.push(audio[at : at + 320])
        if told is None and (ending := seg.ending_segment()) is not None:
            told = ending
            assert seg.end_sample - 60 * WINDOW < policy.samples(500), "told before the end of speech is sure"
        if pushed:
            (segment,) = pushed
            assert told is not None
            assert (told.start_sample, told.end_sample) == (segment.start_sample, segment.end_sample)
            np.testing.assert_array_equal(told.audio, segment.audio)
            return
    raise AssertionError("no segment")


# --- keep_from -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [320, 333, 4096])
def test_keep_from_never_passes_audio_a_future_segment_needs(size: int) -> None:
    seg = Segmenter(loudness_scorer, SCENE_POLICY)
    history: list[int] = []
    emitted: list[tuple[int, Segment]] = []
    for at in range(0, len(SCENE), size):
        for s in seg.push(SCENE[at : at + size]):
            emitted.append((len(history), s))
        history.append(seg.keep_from)
        assert seg.keep_from <= seg.end_sample
    for s in seg.flush():
        emitted.append((len(history), s))
    assert len(emitted) >= 4
    assert history == sorted(history), "keep_from only moves forward"
    for pushed_before, s in emitted:
        # while the segment was still open, nothing at or after its start may have been released
        assert max(history[:pushed_before], default=0) <= s.start_sample


def test_keep_from_advances_in_silence() -> None:
    seg = Segmenter(loudness_scorer, DEFAULT)
    for _ in range(100):
        seg.push(np.zeros(320, np.float32))
        # it trails by at most a reset interval (it moves from one VAD reset point to the next), the pre-roll
        assert seg.end_sample - seg.keep_from < WINDOW + RESET_EVERY + PAD + CONTEXT
    assert seg.keep_from == RESET_EVERY - CONTEXT  # 32000 samples: the reset point at 16384 is the last


def test_keep_from_holds_open_utterance_pre_roll() -> None:
    audio = track(120, [(20, 100)])
    seg = Segmenter(loudness_scorer, DEFAULT)
    seg.push(audio[: 100 * WINDOW])
    assert seg.in_speech
    # before the pre-roll, at the last point where the VAD state restarted: the first window (512)
    assert seg.keep_from == WINDOW - CONTEXT <= 20 * WINDOW - PAD


# --- StreamState -----------------------------------------------------------------------------------------

INFO = StreamInfo(
    meeting_id="m1", speaker_id="alice", stream_id="m1/alice", sample_rate=RATE, stream_start_ms=1000
)


class RecordingSegmenter:
    """Stands in for Segmenter: records what StreamState pushes."""

    def __init__(self, first_sample: int = 0, flushed: list[Segment] | None = None):
        self.first_sample = first_sample
        self.pushed: list[np.ndarray] = []
        self.keep_from = first_sample
        self.flushed = flushed or []
        self.flush_calls = 0

    @property
    def end_sample(self) -> int:
        return self.first_sample + sum(len(p) for p in self.pushed)

    def push(self, audio: np.ndarray) -> list[Segment]:
        self.pushed.append(audio)
        return []

    def flush(self) -> list[Segment]:
        self.flush_calls += 1
        return self.flushed


def frame(first_sample: int, samples: np.ndarray | int) -> AudioFrameV1:
    if isinstance(samples, int):
        samples = np.arange(first_sample, first_sample + samples) % 30000
    pcm = np.asarray(samples, "<i2").tobytes()
    return AudioFrameV1("m1", "alice", "m1/alice", RATE, first_sample, 1000, pcm)


def state(first_sample: int = 0, **kwargs: object) -> StreamState:
    return StreamState(info=INFO, segmenter=RecordingSegmenter(first_sample, **kwargs), partition=2)  # type: ignore[arg-type]


def never_restart(first: int) -> RecordingSegmenter:
    raise AssertionError("segmenter must not be restarted")


def test_pcm_to_float() -> None:
    out = pcm_to_float(np.array([0, 16384, -32768, 32767], "<i2").tobytes())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.5, -1.0, 32767 / 32768])


def test_accept_contiguous_frames() -> None:
    st_ = state()
    f1, f2 = frame(0, 320), frame(320, 320)
    st_.accept(f1, 10, never_restart)
    st_.accept(f2, 11, never_restart)
    pushed = st_.segmenter.pushed  # type: ignore[attr-defined]
    np.testing.assert_array_equal(np.concatenate(pushed), pcm_to_float(f1.pcm + f2.pcm))
    assert list(st_.frame_offsets) == [(320, 10), (640, 11)]


def test_accept_skips_resent_audio() -> None:
    st_ = state()
    first = frame(0, 3200)
    st_.accept(first, 10, never_restart)
    # the client reconnects and resends from sample 1600: only samples 3200..4800 are new
    resent = frame(1600, 3200)
    assert st_.accept(resent, 11, never_restart) == []
    pushed = st_.segmenter.pushed  # type: ignore[attr-defined]
    assert [len(p) for p in pushed] == [3200, 1600]
    np.testing.assert_array_equal(pushed[1], pcm_to_float(resent.pcm)[1600:])
    assert st_.segmenter.end_sample == 4800
    assert list(st_.frame_offsets) == [(3200, 10), (4800, 11)]


def test_accept_ignores_frame_entirely_seen() -> None:
    st_ = state()
    st_.accept(frame(0, 3200), 10, never_restart)
    assert st_.accept(frame(640, 640), 11, never_restart) == []
    assert st_.accept(frame(0, 3200), 12, never_restart) == []
    assert len(st_.segmenter.pushed) == 1  # type: ignore[attr-defined]
    assert list(st_.frame_offsets) == [(3200, 10)]


def test_accept_fills_small_gap_with_silence() -> None:
    st_ = state()
    st_.accept(frame(0, 3200), 10, never_restart)
    later = frame(4800, 320)
    st_.accept(later, 11, never_restart)
    pushed = st_.segmenter.pushed  # type: ignore[attr-defined]
    np.testing.assert_array_equal(pushed[1][:1600], np.zeros(1600, np.float32))
    np.testing.assert_array_equal(pushed[1][1600:], pcm_to_float(later.pcm))
    assert st_.segmenter.end_sample == 5120


def test_accept_fills_gap_of_exactly_max_gap() -> None:
    st_ = state()
    st_.accept(frame(0, 320), 10, never_restart)
    st_.accept(frame(320 + MAX_GAP_SAMPLES, 320), 11, never_restart)
    assert st_.segmenter.end_sample == 640 + MAX_GAP_SAMPLES


def test_accept_restarts_segmentation_after_huge_gap() -> None:
    old_segment = Segment(0, 3200, 0, np.zeros(3200, np.float32))
    st_ = state(flushed=[old_segment])
    old = st_.segmenter
    st_.accept(frame(0, 3200), 10, never_restart)
    created: list[RecordingSegmenter] = []

    def restart(first: int) -> RecordingSegmenter:
        created.append(RecordingSegmenter(first))
        return created[-1]

    far = 3200 + MAX_GAP_SAMPLES + 1
    out = st_.accept(frame(far, 320), 11, restart)
    assert out == [old_segment]
    assert old.flush_calls == 1  # type: ignore[attr-defined]
    assert st_.segmenter is created[0]
    assert created[0].first_sample == far
    assert [len(p) for p in created[0].pushed] == [320]  # no zeros for the hole
    assert list(st_.frame_offsets) == [(far + 320, 11)]


def test_committable_offset_is_earliest_needed_frame() -> None:
    st_ = state()
    for i in range(4):
        st_.accept(frame(i * 3200, 3200), 100 + i, never_restart)
    seg = st_.segmenter
    seg.keep_from = 0  # type: ignore[misc]
    assert st_.committable_offset() == 100
    seg.keep_from = 3199  # type: ignore[misc]
    assert st_.committable_offset() == 100
    seg.keep_from = 3200  # type: ignore[misc]
    assert st_.committable_offset() == 101  # frame 100 ends at 3200: nothing of it is needed
    seg.keep_from = 9000  # type: ignore[misc]
    assert st_.committable_offset() == 102
    seg.keep_from = 12800  # type: ignore[misc]
    assert st_.committable_offset() is None


def test_committable_offset_with_real_segmenter() -> None:
    audio = (track(200, [(60, 120)]) * 32767).astype("<i2")
    st_ = StreamState(info=INFO, segmenter=Segmenter(loudness_scorer, DEFAULT), partition=0)
    size = 1600
    offsets: dict[int, int] = {}  # offset -> first sample
    segments: list[Segment] = []
    for i, at in enumerate(range(0, len(audio), size)):
        offsets[i] = at
        segments += st_.accept(frame(at, audio[at : at + size]), i, never_restart)
        committable = st_.committable_offset()
        if committable is not None:
            frame_start = offsets[committable]
            # the committed position never skips audio still needed by the segmenter
            assert frame_start <= st_.segmenter.keep_from < frame_start + size
        if st_.segmenter.in_speech:
            assert committable is not None
            assert offsets[committable] <= 60 * WINDOW - PAD
    assert bounds(segments) == [(60 * WINDOW - PAD, 120 * WINDOW + PAD, 60 * WINDOW)]


# --- final_event -----------------------------------------------------------------------------------------

SEGMENT = Segment(
    start_sample=16000, end_sample=48000, speech_start_sample=19200, audio=np.zeros(32000, np.float32)
)
KW = dict(language="en", engine="whisper", model="tiny.en")


def transcription(*words: tuple[str, float, float]) -> Transcription:
    return Transcription(
        text=" ".join(w for w, _, _ in words),
        words=tuple(Word(w, s, e, 0.912345) for w, s, e in words),
        confidence=0.876543,
    )


def test_final_event_maps_word_times_to_media_time() -> None:
    event = final_event(INFO, SEGMENT, transcription(("hello", 0.25, 0.5), ("world", 1.0, 1.9)), **KW)
    assert isinstance(event, TranscriptFinalV1)
    # sample 16000 of a stream placed at 1000 ms is media time 2000 ms
    assert [(w.word, w.start_ms, w.end_ms) for w in event.words] == [
        ("hello", 2250, 2500),
        ("world", 3000, 3900),
    ]
    assert event.start_ms == 1000 + 19200 * 1000 // RATE  # the VAD's speech start, not the pre-roll
    assert event.end_ms == 3900
    assert (event.start_sample, event.end_sample, event.sample_rate) == (16000, 48000, RATE)
    assert (event.meeting_id, event.speaker_id, event.stream_id) == ("m1", "alice", "m1/alice")
    assert event.text == "hello world"
    assert event.words[0].probability == 0.9123
    assert event.confidence == 0.8765
    assert (event.language, event.engine, event.model, event.run) == (
        "en",
        "whisper",
        "tiny.en",
        "whisper:tiny.en",
    )


def test_final_event_end_is_clipped_to_segment_end() -> None:
    event = final_event(INFO, SEGMENT, transcription(("long", 0.1, 2.5)), **KW)
    assert event is not None
    assert event.words[0].end_ms == 4500
    assert event.end_ms == 1000 + 48000 * 1000 // RATE


def test_final_event_end_after_start() -> None:
    event = final_event(INFO, SEGMENT, transcription(("uh", 0.0, 0.05)), **KW)
    assert event is not None
    assert event.end_ms == event.start_ms + 1


def test_final_event_none_without_words() -> None:
    assert final_event(INFO, SEGMENT, Transcription(text="", words=(), confidence=0.0), **KW) is None
    assert final_event(INFO, SEGMENT, Transcription(text=" [noise]", words=(), confidence=0.3), **KW) is None


def test_final_event_ids_are_deterministic() -> None:
    result = transcription(("hello", 0.25, 0.5))
    a = final_event(INFO, SEGMENT, result, **KW)
    b = final_event(INFO, SEGMENT, transcription(("hello", 0.3, 0.6)), **KW)
    assert a is not None and b is not None
    assert a.utterance_id == b.utterance_id == ids.utterance_id("m1/alice", 16000)
    assert a.event_id == b.event_id == ids.event_id("transcript.final", a.utterance_id, "whisper:tiny.en")
    other_run = final_event(INFO, SEGMENT, result, language="en", engine="whisper", model="base.en")
    assert other_run is not None
    assert other_run.utterance_id == a.utterance_id
    assert other_run.event_id != a.event_id
    moved = Segment(16512, 48000, 19200, np.zeros(31488, np.float32))
    assert final_event(INFO, moved, result, **KW).utterance_id != a.utterance_id  # type: ignore[union-attr]
