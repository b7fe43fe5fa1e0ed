"""Meeting metrics from dialogue timings alone: talk time and share per speaker, words per minute, overlap,
interruptions, questions, the longest monologue and silence. Pure arithmetic on [start_ms, end_ms)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from enrichment.model import Dialogue, Metrics, Monologue, SpeakerMetrics
from enrichment.text import split_sentences, words

INTERRUPTION_MIN_REMAINING_MS = 1000  # a turn that starts this long before another ends cut it short
MONOLOGUE_GAP_MS = 2000  # one speaker's turns this close together are one stretch of talk


def _union_ms(spans: Sequence[tuple[int, int]]) -> int:
    total, end = 0, -1
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _merged(spans: Sequence[tuple[int, int]], gap_ms: int = 0) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + gap_ms:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _questions(text: str) -> int:
    return sum(1 for s in split_sentences(text) if s.rstrip().endswith("?"))


def meeting_metrics(dialogues: Sequence[Dialogue]) -> Metrics:
    """Metrics of the meeting from its first word to its last. A speaker's talk time is the union of their
    turns; overlap is time when two or more speak; an interruption is a turn that starts while another
    speaker's turn has at least a second left; silence is time when nobody speaks."""
    turns = sorted((d for d in dialogues if d.end_ms > d.start_ms), key=lambda d: (d.start_ms, d.end_ms))
    if not turns:
        return Metrics(duration_ms=0, speakers={}, words_per_minute=0.0, overlap_ms=0, interruptions=0, questions=0,
                       longest_monologue=None, silence_ms=0, longest_silence_ms=0)  # fmt: skip
    start, end = turns[0].start_ms, max(d.end_ms for d in turns)
    by_speaker: dict[str, list[Dialogue]] = {}
    for d in turns:
        by_speaker.setdefault(d.speaker, []).append(d)
    talk = {s: _union_ms([(d.start_ms, d.end_ms) for d in ds]) for s, ds in by_speaker.items()}
    interruptions = {s: 0 for s in by_speaker}
    interrupted = {s: 0 for s in by_speaker}
    for i, d in enumerate(turns):
        for other in turns[:i]:
            if other.speaker != d.speaker and other.start_ms < d.start_ms <= other.end_ms - INTERRUPTION_MIN_REMAINING_MS:
                interruptions[d.speaker] += 1
                interrupted[other.speaker] += 1
                break
    total_talk = sum(talk.values()) or 1
    speakers = {}
    for s, ds in by_speaker.items():
        n = sum(len(words(d.text)) for d in ds)
        speakers[s] = SpeakerMetrics(
            talk_ms=talk[s], share=round(talk[s] / total_talk, 4), words=n,
            words_per_minute=round(n / (talk[s] / 60000), 1) if talk[s] else 0.0, turns=len(ds),
            questions=sum(_questions(d.text) for d in ds), interruptions=interruptions[s], interrupted=interrupted[s],
        )  # fmt: skip
    speech = _merged([(d.start_ms, d.end_ms) for d in turns])
    spoken = sum(b - a for a, b in speech)
    overlap = sum(talk.values()) - spoken
    gaps = [b2[0] - b1[1] for b1, b2 in itertools.pairwise(speech)]
    longest = None
    for s, ds in by_speaker.items():
        for a, b in _merged([(d.start_ms, d.end_ms) for d in ds], MONOLOGUE_GAP_MS):
            if longest is None or b - a > longest.duration_ms:
                longest = Monologue(speaker=s, start_ms=a, end_ms=b, duration_ms=b - a)
    all_words = sum(m.words for m in speakers.values())
    return Metrics(
        duration_ms=end - start, speakers=speakers,
        words_per_minute=round(all_words / (spoken / 60000), 1) if spoken else 0.0,
        overlap_ms=max(overlap, 0), interruptions=sum(interruptions.values()),
        questions=sum(m.questions for m in speakers.values()), longest_monologue=longest,
        silence_ms=sum(gaps), longest_silence_ms=max(gaps, default=0),
    )  # fmt: skip
