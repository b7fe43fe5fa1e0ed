"""Restarting segmentation where the STT worker commits: a worker that re-reads a stream from the committed
frame, starting a fresh segmenter at ``keep_from``, emits exactly the segments the first worker emitted
after that commit (same boundaries, hence same utterance ids, and the same audio), preceded at most by
segments the first worker emitted too, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaver.events import AudioFrameV1
from stt_workers.processor import (
    MAX_RESUME_METADATA,
    StreamInfo,
    StreamState,
    decode_resume,
    encode_resume,
    resume_key,
)
from stt_workers.segmenter import Segment, Segmenter, SegmenterPolicy
from stt_workers.vad import CONTEXT, WINDOW

RATE = 16000
INFO = StreamInfo(meeting_id="m1", speaker_id="alice", stream_id="m1/alice", sample_rate=RATE, stream_start_ms=0)
POLICIES = [
    SegmenterPolicy(),
    SegmenterPolicy(max_utterance_ms=3000),
    SegmenterPolicy(min_silence_ms=200, pad_ms=100),
    SegmenterPolicy(pad_ms=400, min_silence_ms=300),  # pad > min_silence: the previous segment bounds pre-roll
]


def context_scorer(windows: np.ndarray, state: float | None) -> tuple[np.ndarray, float]:
    """Speech when the window is loud, or when its VAD context is very loud (so the context matters:
    zeros standing in for real audio change the score), or when a moving average of loudness carried from
    window to window is (so the state matters, as Silero's does: a hangover after loud audio, a ramp-up
    from a fresh state)."""
    assert windows.shape[1] == CONTEXT + WINDOW
    own = np.abs(windows[:, CONTEXT:]).mean(axis=1)
    context = np.abs(windows[:, :CONTEXT]).mean(axis=1)
    average = 0.0 if state is None else state
    probs = []
    for loudness, before in zip(own, context, strict=True):
        average = 0.7 * average + 0.3 * float(loudness)
        probs.append(0.9 if loudness > 0.05 or before > 0.25 or average > 0.1 else 0.1)
    return np.array(probs, np.float32), average


def scene(bursts: list[tuple[int, int, float]], total: int, first_sample: int) -> np.ndarray:
    """int16 audio from ``first_sample``: sine bursts (start, length in samples, amplitude) in silence."""
    audio = np.zeros(total, np.float32)
    for start, length, amp in bursts:
        at = np.arange(start, min(start + length, total))
        audio[at] = amp * np.sin(2 * np.pi * 440 * (at + first_sample) / RATE)
    return (audio * 32767).astype("<i2")


def frames_of(pcm: np.ndarray, sizes: list[int], first_sample: int) -> list[AudioFrameV1]:
    frames, at, i = [], 0, 0
    while at < len(pcm):
        size = sizes[i % len(sizes)]
        chunk = pcm[at : at + size]
        frames.append(AudioFrameV1("m1", "alice", "m1/alice", RATE, first_sample + at, 0, chunk.tobytes()))
        at, i = at + size, i + 1
    return frames


def new_state(policy: SegmenterPolicy, first_sample: int) -> StreamState:
    return StreamState(info=INFO, segmenter=Segmenter(context_scorer, policy, first_sample), partition=0)


def run(state: StreamState, frames: list[AudioFrameV1], first_offset: int, policy: SegmenterPolicy) -> list[list[Segment]]:
    """Segments emitted per frame (the last entry: the flush at the end of the stream)."""
    out = []
    for i, frame in enumerate(frames):
        out.append(state.accept(frame, first_offset + i, lambda first: Segmenter(context_scorer, policy, first)))
    out.append(state.segmenter.flush())
    return out


def key(s: Segment) -> tuple[int, int, int, bytes]:
    return (s.start_sample, s.end_sample, s.speech_start_sample, s.audio.tobytes())


bursts_st = st.lists(
    st.tuples(st.integers(0, 160_000), st.integers(100, 60_000), st.sampled_from([0.03, 0.1, 0.5, 0.9])),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(
    bursts=bursts_st,
    sizes=st.lists(st.integers(160, 4000), min_size=1, max_size=5),
    policy=st.sampled_from(POLICIES),
    first_sample=st.sampled_from([0, 1, 511, 16_000 * 7 + 3]),
    cuts=st.lists(st.floats(0, 1), min_size=1, max_size=4),
)
def test_a_restart_at_the_committed_frame_emits_the_same_segments(
    bursts: list[tuple[int, int, float]], sizes: list[int], policy: SegmenterPolicy, first_sample: int,
    cuts: list[float],
) -> None:  # fmt: skip
    pcm = scene(bursts, 200_000, first_sample)
    frames = frames_of(pcm, sizes, first_sample)
    original = new_state(policy, first_sample)
    emitted: list[list[Segment]] = []
    resume: list[tuple[int, int | None]] = []  # after each frame: (keep_from, committable offset)
    for i, frame in enumerate(frames):
        emitted.append(original.accept(frame, i, lambda first: Segmenter(context_scorer, policy, first)))
        resume.append((original.segmenter.keep_from, original.committable_offset()))
    emitted.append(original.segmenter.flush())
    assert [p for p, _ in resume] == sorted(p for p, _ in resume), "keep_from only moves forward"

    for cut in cuts:
        k = min(int(cut * len(frames)), len(frames) - 1)  # the worker dies after frame k, committed then
        keep_from, offset = resume[k]
        committed = k + 1 if offset is None else offset
        assert committed <= k + 1
        if offset is not None:
            assert frames[offset].first_sample <= keep_from < frames[offset].end_sample
        restarted = new_state(policy, keep_from)
        again = run(restarted, frames[committed:], committed, policy)
        after = [key(s) for per_frame in emitted[k + 1 :] for s in per_frame]
        everything = [key(s) for per_frame in emitted for s in per_frame]
        replayed = [key(s) for per_frame in again for s in per_frame]
        # Everything emitted after the commit, and before it at most segments the first run emitted too
        # (the parts of speech still going on past max_utterance_ms): same ids, same audio.
        assert len(replayed) >= len(after)
        assert replayed == everything[len(everything) - len(replayed) :]


def test_resume_point_stays_before_long_speech() -> None:
    """Cut points of speech longer than max_utterance_ms depend on where it began, so the resume point
    stays before it (a restart re-decodes the parts already published, with the same ids)."""
    policy = SegmenterPolicy(max_utterance_ms=2000)
    seg = Segmenter(context_scorer, policy)
    speech_start = 20 * WINDOW
    seg.push(np.zeros(speech_start, np.float32))
    before = seg.keep_from
    assert before <= speech_start - policy.samples(policy.pad_ms)
    loud = 0.5 * np.sin(2 * np.pi * 440 * np.arange(6 * RATE) / RATE).astype(np.float32)
    segments = seg.push(loud)
    assert len(segments) >= 2 and seg.in_speech
    assert seg.keep_from == before


def test_keep_from_in_silence_is_the_last_reset_point_past_the_pre_roll() -> None:
    policy = SegmenterPolicy()
    every = policy.samples(policy.state_reset_ms)
    seg = Segmenter(context_scorer, policy)
    seg.push(np.zeros(10 * RATE, np.float32))
    scored_until = (10 * RATE // WINDOW) * WINDOW
    reset = (scored_until - policy.samples(policy.pad_ms)) // every * every
    assert seg.keep_from == reset - CONTEXT


def test_first_window_has_its_whole_context() -> None:
    """Zeros never stand in for audio before a segmenter's first sample: a loud context there would be
    scored as silence by a segmenter that starts later."""
    calls: list[int] = []

    def spy(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
        calls.append(len(windows))
        return np.zeros(len(windows), np.float32), state

    seg = Segmenter(spy, SegmenterPolicy(), first_sample=1000)
    seg.push(np.zeros(4 * WINDOW - 1000, np.float32))  # up to 2048
    # windows at 1024 (context from 960 < 1000: skipped) and 1536 (scored)
    assert calls == [1]


# --- commit metadata ------------------------------------------------------------------------------------


def test_resume_metadata_round_trip() -> None:
    points = {resume_key("m1/alice"): 123, resume_key("m-2/bob"): 0, resume_key("x" * 64 + "/" + "y" * 64): 10**12}
    text = encode_resume(points)
    assert decode_resume(text) == points
    assert decode_resume(encode_resume({})) == {}


@pytest.mark.parametrize("foreign", [None, "", "something else", "stt-resume/2 a:1"])
def test_foreign_metadata_gives_no_resume_points(foreign: str | None) -> None:
    assert decode_resume(foreign) == {}


def test_resume_keys_are_short_and_distinct() -> None:
    keys = {resume_key(f"meeting-{i}/speaker-{j}") for i in range(50) for j in range(20)}
    assert len(keys) == 1000
    assert all(len(k) == 16 for k in keys)
    # about 130 open streams per partition fit in the broker's default 4 KB of commit metadata
    big = {resume_key(f"m/{i}"): 10**11 for i in range(130)}
    assert len(encode_resume(big)) <= MAX_RESUME_METADATA
