"""Per-stream voice-activity segmentation: audio in, finished speech segments out.

Pure logic around an injected window scorer (Silero in production, a fake in unit tests). Windows are
aligned to absolute sample positions, so segment boundaries do not depend on how audio was framed.

VAD state: the scorer carries a recurrent state from window to window (Silero's LSTM), so a window's
probability depends on the stream's audio before it. The state restarts from zero at *reset points*:
the segmenter's first window, and every window on the absolute grid of ``state_reset_ms`` that is reached
outside speech. Between reset points the state is carried across pushes, so framing does not matter.

Resuming: a window is scored only when its VAD context lies inside the segmenter's audio, and a segmenter
started at sample P begins with a fresh state at its first window. ``keep_from`` is a sample P (advanced
only in silence, and only to just before a reset point R, ``R - CONTEXT``, once the audio scored from R
on covers the pre-roll) at which a fresh ``Segmenter(P)`` fed the same audio scores the
same windows from the same (zero) state as this one and emits exactly the segments this one emits from
then on, with the same boundaries, hence the same utterance ids: the STT worker commits Kafka offsets up
to it and restarts there. So ``keep_from`` moves in steps of ``state_reset_ms``, trailing the audio in
silence by that and the pre-roll at most.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stt_workers.vad import CONTEXT, WINDOW

# (windows (n, CONTEXT + WINDOW) in time order, state before the first or None for a fresh one) ->
# (n speech probabilities, state after the last); the state is the scorer's own, opaque here
Scorer = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]


@dataclass(frozen=True)
class SegmenterPolicy:
    sample_rate: int = 16000
    threshold: float = 0.5  # a window at or above it starts speech
    # Hysteresis: once in speech, a window counts as voiced down to ``threshold - hysteresis`` (Silero's and
    # faster-whisper's rule, with 0.15); only windows below that count towards ``min_silence_ms``.
    hysteresis: float = 0.0
    min_silence_ms: int = 600
    min_speech_ms: int = 200
    pad_ms: int = 200  # pre-roll: audio kept before the first voiced window
    # Audio kept after the last voiced window (never more than ``min_silence_ms``); None: ``pad_ms``.
    trailing_pad_ms: int | None = None
    max_utterance_ms: int = 20_000
    # Speech longer than ``max_utterance_ms`` is cut in its last third. A number: at the first pause there
    # at least this long (a run of windows below ``threshold - hysteresis`` that speech resumes after), told
    # as speech resumes, so the final is asked for a moment after its last word; failing one, or None: at
    # the quietest window of the last third, told when the length runs out (up to a third of
    # ``max_utterance_ms`` after that window).
    long_cut_pause_ms: int | None = None
    # Silence after which ``ending_segment`` tells the utterance's final segment (at least the trailing
    # pad; from min_silence_ms on, never: the segment comes from ``push`` first).
    eager_silence_ms: int = 300
    # Outside speech, the VAD state restarts from zero at every multiple of this (absolute samples, whole
    # windows): the points a restarted worker can resume from. 0: never (one state for the whole stream,
    # and ``keep_from`` never moves; for measurements only).
    state_reset_ms: int = 1024

    def samples(self, ms: int) -> int:
        return self.sample_rate * ms // 1000


@dataclass(frozen=True)
class Segment:
    start_sample: int  # padded start, the utterance's identity
    end_sample: int
    speech_start_sample: int
    audio: np.ndarray  # float32 in [-1, 1], from start_sample to end_sample


class Segmenter:
    def __init__(self, scorer: Scorer, policy: SegmenterPolicy, first_sample: int = 0):
        self._scorer = scorer
        self._policy = policy
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = first_sample  # absolute sample of _buffer[0]
        # next window start, aligned; the first one has its whole VAD context (no zeros standing in for
        # audio before first_sample, which would score differently from the real audio a run that started
        # earlier saw)
        self._scored_until = -(-(first_sample + CONTEXT) // WINDOW) * WINDOW
        self._resume_from = first_sample
        self._in_speech = False
        self._speech_start = 0
        self._voice_end = 0
        self._last_segment_end = first_sample
        self._quiet_windows: list[tuple[int, float]] = []  # (window start, prob) below threshold in speech
        self._pause: list[tuple[float, int]] = []  # (prob, window start) of the run of silent windows now
        self._vad_state: Any = None  # the scorer's state after the last scored window; None: fresh
        self._reset_at = self._scored_until  # the last window scored from a fresh state

    @property
    def end_sample(self) -> int:
        return self._buffer_start + len(self._buffer)

    @property
    def keep_from(self) -> int:
        """Where a restart resumes: ``Segmenter(policy, keep_from)`` fed this stream's audio from this
        sample on emits the same segments as this one from now on. Audio before it has been turned into
        segments or was silence. Kafka offsets are committed only up to the frame holding it. Only moves
        forward; it stays before an open utterance's pre-roll (and before every piece of speech longer
        than ``max_utterance_ms`` that is still going on, whose cut points depend on where it began)."""
        return self._resume_from

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def settled_sample(self) -> int:
        """No segment that ends later will have speech starting before this sample: the open utterance's
        speech start while in speech, else the first window not yet scored."""
        return self._speech_start if self._in_speech else self._scored_until

    def open_segment(self) -> Segment | None:
        """The utterance being spoken, as far as it has been heard (for partial results); its start is
        the one its final segment will have, hence the same utterance id."""
        if not self._in_speech:
            return None
        start = max(self._speech_start - self._pad, self._last_segment_end, self._buffer_start)
        end = self.end_sample
        audio = self._buffer[start - self._buffer_start : end - self._buffer_start].copy()
        return Segment(start_sample=start, end_sample=end, speech_start_sample=self._speech_start, audio=audio)

    def ending_segment(self) -> Segment | None:
        """The segment ``push`` will return if the silence that began after the last voiced window goes on
        to ``min_silence_ms``: same boundaries, same audio. Known once that silence covers the trailing
        pad; told once it lasts ``eager_silence_ms``, before the end of speech is sure, so the decode can
        start early. None while voiced, in silence, or for speech too short to be an utterance."""
        need = max(self._trailing_pad, self._policy.samples(self._policy.eager_silence_ms))
        if not self._in_speech or self._scored_until - self._voice_end < need:
            return None
        return self._segment(self._speech_start, self._voice_end, self._voice_end + self._trailing_pad)

    def push(self, audio: np.ndarray) -> list[Segment]:
        """Append audio (float32, contiguous with what came before) and return segments that ended."""
        self._buffer = np.concatenate([self._buffer, audio.astype(np.float32, copy=False)])
        segments: list[Segment] = []
        for run in self._runs(range(self._scored_until, self.end_sample - WINDOW + 1, WINDOW)):
            if self._is_reset_point(run[0]):
                self._vad_state, self._reset_at = None, run[0]
            probs, self._vad_state = self._scorer(np.stack([self._window(s) for s in run]), self._vad_state)
            for start, prob in zip(run, probs, strict=True):
                self._scored_until = start + WINDOW
                segment = self._step(start, float(prob))
                if segment:
                    segments.append(segment)
                self._advance_resume(start + WINDOW)
        self._trim()
        return segments

    def flush(self) -> list[Segment]:
        """End of stream: close an open utterance."""
        if not self._in_speech:
            return []
        self._in_speech = False
        segment = self._cut(self._speech_start, self._voice_end, self._voice_end + self._trailing_pad)
        self._trim()
        return [segment] if segment else []

    @property
    def _pad(self) -> int:
        return self._policy.samples(self._policy.pad_ms)

    @property
    def _trailing_pad(self) -> int:
        # Never more than the silence that ended the utterance: that audio has always arrived when the
        # end is detected, so boundaries do not depend on how the audio was framed.
        p = self._policy
        trailing = p.samples(p.trailing_pad_ms) if p.trailing_pad_ms is not None else self._pad
        return min(trailing, p.samples(p.min_silence_ms))

    @property
    def _reset_every(self) -> int:
        return self._policy.samples(self._policy.state_reset_ms) // WINDOW * WINDOW

    def _runs(self, starts: range) -> list[range]:
        """Window starts split before every grid point of ``state_reset_ms`` (where the state may restart:
        that depends on whether the windows before it end the speech, so they are scored first)."""
        every = self._reset_every
        if not every or not starts:
            return [starts] if starts else []
        cuts = [s for s in range(-(-starts.start // every) * every, starts.stop, every) if s > starts.start]
        bounds = [starts.start, *cuts, starts.stop]
        return [range(a, b, WINDOW) for a, b in itertools.pairwise(bounds) if b > a]

    def _is_reset_point(self, start: int) -> bool:
        every = self._reset_every
        return bool(every) and start % every == 0 and not self._in_speech

    def _advance_resume(self, scored_until: int) -> None:
        """After the window ending at ``scored_until``: a fresh ``Segmenter(R - CONTEXT)`` starts scoring
        at the last reset point R, from a fresh state, as this one did, so it scores the same windows
        with the same probabilities from R on. It is in the same state as this one outside speech once the
        audio scored since R covers the pre-roll (every later speech start gets the same pre-roll) and the
        last segment ended by R - CONTEXT (so it bounds no pre-roll either; speech since R too short for
        a segment is too short for the fresh one as well)."""
        if self._in_speech or scored_until < self._reset_at + self._pad:
            return
        candidate = self._reset_at - CONTEXT
        if candidate >= self._last_segment_end and candidate > self._resume_from:
            self._resume_from = candidate

    def _window(self, start: int) -> np.ndarray:
        lo = start - CONTEXT - self._buffer_start
        if lo >= 0:
            return self._buffer[lo : lo + CONTEXT + WINDOW]
        return np.concatenate([np.zeros(-lo, np.float32), self._buffer[: CONTEXT + WINDOW + lo]])

    def _step(self, start: int, prob: float) -> Segment | None:
        p = self._policy
        end = start + WINDOW
        pause, self._pause = self._pause, []
        if prob >= p.threshold:
            if not self._in_speech:
                self._in_speech = True
                self._speech_start = start
                self._quiet_windows = []
            self._voice_end = end
        elif self._in_speech:
            self._quiet_windows.append((start, prob))
            if prob >= p.threshold - p.hysteresis:
                self._voice_end = end  # still speech: hysteresis
            elif end - self._voice_end >= p.samples(p.min_silence_ms):
                self._in_speech = False
                return self._cut(self._speech_start, self._voice_end, self._voice_end + self._trailing_pad)
            else:
                self._pause = [*pause, (prob, start)]
        # Speech resumed after a pause: in a long utterance's last third, that pause is where it is cut.
        if self._in_speech and pause and not self._pause and self._cuts_long_at(pause):
            return self._cut_at(min(pause)[1] + WINDOW // 2)
        if self._in_speech and end - self._speech_start >= p.samples(p.max_utterance_ms):
            return self._cut_long(end)
        return None

    def _cuts_long_at(self, pause: list[tuple[float, int]]) -> bool:
        """Whether a pause that speech just resumed after ends the open utterance (``long_cut_pause_ms``):
        long enough, and in the last third of ``max_utterance_ms``."""
        p = self._policy
        return (p.long_cut_pause_ms is not None and len(pause) * WINDOW >= p.samples(p.long_cut_pause_ms)
                and pause[0][1] >= self._speech_start + p.samples(p.max_utterance_ms) * 2 // 3)  # fmt: skip

    def _cut_long(self, end: int) -> Segment | None:
        """Maximum utterance length reached: cut at the quietest window of the last third, else here."""
        horizon = end - self._policy.samples(self._policy.max_utterance_ms) // 3
        quiet = [(prob, s) for s, prob in self._quiet_windows if s >= horizon]
        return self._cut_at(min(quiet)[1] + WINDOW // 2 if quiet else end)

    def _cut_at(self, cut: int) -> Segment | None:
        """Cut the speech going on at ``cut``: the utterance so far ends there, the next begins there."""
        segment = self._cut(self._speech_start, cut, cut)
        self._speech_start = cut
        self._quiet_windows = [(s, pr) for s, pr in self._quiet_windows if s >= cut]
        self._pause = [(pr, s) for pr, s in self._pause if s >= cut]
        return segment

    def _cut(self, speech_start: int, voice_end: int, end: int) -> Segment | None:
        """End the utterance with ``_segment``; no later segment starts before its end."""
        segment = self._segment(speech_start, voice_end, end)
        if segment is not None:
            self._last_segment_end = segment.end_sample
        return segment

    def _segment(self, speech_start: int, voice_end: int, end: int) -> Segment | None:
        """A segment of the speech from ``speech_start`` to ``voice_end``, padded up to ``end``; None when
        the speech is shorter than the policy's minimum (a click, a cough)."""
        if voice_end - speech_start < self._policy.samples(self._policy.min_speech_ms):
            return None
        start = max(speech_start - self._pad, self._last_segment_end, self._buffer_start)
        end = min(end, self.end_sample)
        audio = self._buffer[start - self._buffer_start : end - self._buffer_start].copy()
        return Segment(start_sample=start, end_sample=end, speech_start_sample=speech_start, audio=audio)

    def _trim(self) -> None:
        """Drop audio no future segment can need: before the open utterance's pre-roll, or (in silence)
        all but the pre-roll and the VAD context."""
        if self._in_speech:
            keep = max(self._speech_start - self._pad, self._last_segment_end)
        else:
            keep = max(self._scored_until - self._pad - CONTEXT, self._last_segment_end)
        keep = max(self._buffer_start, min(keep, self.end_sample))
        self._buffer = self._buffer[keep - self._buffer_start :]
        self._buffer_start = keep
