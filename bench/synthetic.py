"""Synthetic meetings: the transcript events STT workers would publish, for merger tests and benchmarks."""

from __future__ import annotations

import random

from palaver import ids
from palaver.events import StreamStartedV1, StreamStoppedV1, TranscriptFinalV1, TranscriptPartialV1
from palaver.events.base import EventV

RUN = "whisper:tiny.en"
RATE = 16000


def synthetic_meeting(meeting_id: str, speakers: int, utterances: int, seed: int, partials: int = 2) -> list[EventV]:
    """Each speaker's stream: started, ``utterances`` utterances (each with ``partials`` partials and a
    final, random lengths and pauses, so speakers overlap), stopped; all streams interleaved in the time
    order their events would be produced."""
    rng = random.Random(seed)
    timeline: list[tuple[int, int, int, EventV]] = []
    for s in range(speakers):
        speaker = f"spk{s}"
        stream = ids.stream_id(meeting_id, speaker)
        seq_no = 0

        def add(at: int, event: EventV, s: int = s) -> None:
            nonlocal seq_no
            timeline.append((at, s, seq_no, event))
            seq_no += 1

        add(0, StreamStartedV1(event_id=ids.event_id("stream.started", stream, 0), meeting_id=meeting_id,
                               speaker_id=speaker, stream_id=stream, sample_rate=RATE, stream_start_ms=0, run=RUN))  # fmt: skip
        t = rng.randint(0, 2000)
        for n in range(utterances):
            duration = rng.randint(500, 4000)
            uid = ids.utterance_id(stream, t * RATE // 1000)
            for seq in range(1, partials + 1):
                at = t + duration * seq // (partials + 1)
                add(at, TranscriptPartialV1(
                    event_id=ids.event_id("transcript.partial", uid, RUN, seq), utterance_id=uid,
                    meeting_id=meeting_id, speaker_id=speaker, stream_id=stream, start_ms=t, end_ms=at,
                    stable_text=f"{speaker} {n}", unstable_text="..." * seq, sequence=seq, language="en",
                    engine="whisper", model="tiny.en", run=RUN))  # fmt: skip
            add(t + duration + 300, TranscriptFinalV1(
                event_id=ids.event_id("transcript.final", uid, RUN), utterance_id=uid, meeting_id=meeting_id,
                speaker_id=speaker, stream_id=stream, start_ms=t, end_ms=t + duration, start_sample=t * 16,
                end_sample=(t + duration) * 16, sample_rate=RATE, text=f"{speaker} says {n}", confidence=0.9,
                language="en", engine="whisper", model="tiny.en", run=RUN))  # fmt: skip
            t += duration + rng.randint(300, 5000)
        add(t + 1000, StreamStoppedV1(
            event_id=ids.event_id("stream.stopped", stream, t * 16), meeting_id=meeting_id, speaker_id=speaker,
            stream_id=stream, stream_start_ms=0, end_sample=t * 16, reason="end", run=RUN))  # fmt: skip
    return [e for *_, e in sorted(timeline, key=lambda x: (x[0], x[1], x[2]))]
