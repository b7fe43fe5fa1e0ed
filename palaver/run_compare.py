"""Comparing two runs of one meeting (and a run with a reference transcript), as pure functions.

What is compared: each run's final dialogues, the machine's text (human edits are not a run's), per
speaker, in media order. Run B is scored against run A as a hypothesis against its reference: the word
error rate (``palaver.textmetrics.word_error_rate``) per speaker, and over the meeting as the speakers'
errors over A's words. The words that differ come from a word alignment (``align_words``), grouped into
spans of consecutive edits, each placed at the media time of its dialogue, with a few equal words around
it for context.

A reference transcript is a text file: either ``speaker: text`` lines, where every speaker is one of the
meeting's (its user id or username; several lines of a speaker are read in order), scored per speaker; or
any other text, scored against the run's whole text in media order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from palaver.textmetrics import align_words, normalize, word_error_rate

CONTEXT_WORDS = 3


@dataclass(frozen=True)
class Turn:
    """One final dialogue of a run: who, where on the media timeline, what the machine heard."""

    speaker_id: str
    start_ms: int
    text: str


@dataclass(frozen=True)
class Difference:
    """A span of consecutive edits in one speaker's words: A's words there and B's instead (either may be
    empty: words B lacks, or adds), at the media time of the dialogue holding them, with up to
    ``CONTEXT_WORDS`` equal words before and after. Words are ``normalize``'s (lower case, no punctuation)."""

    speaker_id: str
    at_ms: int
    a: str
    b: str
    before: str
    after: str


@dataclass(frozen=True)
class SpeakerScore:
    speaker_id: str
    words_a: int
    words_b: int
    wer: float  # B against A
    substitutions: int
    deletions: int  # A's words B lacks
    insertions: int  # words B adds


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    words_a: int
    words_b: int
    wer: float  # B against A over the meeting: the speakers' errors over A's words
    speakers: tuple[SpeakerScore, ...]
    differences: tuple[Difference, ...]


def speaker_words(turns: Iterable[Turn]) -> dict[str, list[tuple[str, int]]]:
    """Per speaker, their words in media order, each with its dialogue's start."""
    out: dict[str, list[tuple[str, int]]] = {}
    for turn in sorted(turns, key=lambda t: (t.start_ms, t.speaker_id)):
        out.setdefault(turn.speaker_id, []).extend((word, turn.start_ms) for word in normalize(turn.text))
    return out


def compare_runs(a: str, a_turns: Iterable[Turn], b: str, b_turns: Iterable[Turn]) -> Comparison:
    """Run ``b`` against run ``a``, per speaker (the speakers of either, in order of their first words)."""
    words_a, words_b = speaker_words(a_turns), speaker_words(b_turns)
    first_at = {s: w[0][1] for s, w in (*words_b.items(), *words_a.items()) if w}
    speakers = sorted(set(words_a) | set(words_b), key=lambda s: (first_at.get(s, 0), s))
    scores, differences, errors = [], [], 0
    for speaker in speakers:
        ref, hyp = words_a.get(speaker, []), words_b.get(speaker, [])
        score, spans = _score(speaker, ref, hyp)
        scores.append(score)
        differences += spans
        # Exact errors from the rate (a speaker only B has: every word of theirs is an insertion).
        errors += round(score.wer * score.words_a) if score.words_a else score.words_b
    total_a, total_b = sum(s.words_a for s in scores), sum(s.words_b for s in scores)
    wer = errors / total_a if total_a else (0.0 if not total_b else 1.0)
    differences.sort(key=lambda d: (d.at_ms, d.speaker_id))
    return Comparison(a, b, total_a, total_b, wer, tuple(scores), tuple(differences))


def _score(speaker: str, ref: list[tuple[str, int]],
           hyp: list[tuple[str, int]]) -> tuple[SpeakerScore, list[Difference]]:  # fmt: skip
    ref_words, hyp_words = [w for w, _ in ref], [w for w, _ in hyp]
    ops = align_words(ref_words, hyp_words)
    counts = {"substitute": 0, "delete": 0, "insert": 0}
    spans: list[Difference] = []
    index = 0
    while index < len(ops):
        if ops[index][0] == "equal":
            index += 1
            continue
        end = index
        while end < len(ops) and ops[end][0] != "equal":
            counts[ops[end][0]] += 1
            end += 1
        run = ops[index:end]
        a_words = [ref_words[i] for _, i, _ in run if i is not None]
        b_words = [hyp_words[j] for _, _, j in run if j is not None]
        at = next((ref[i][1] for _, i, _ in run if i is not None), None)
        if at is None:  # an insertion only: at the B dialogue that holds it
            at = next(hyp[j][1] for _, _, j in run if j is not None)
        before = [ref_words[i] for _, i, _ in ops[max(0, index - CONTEXT_WORDS) : index] if i is not None]
        after = [ref_words[i] for _, i, _ in ops[end : end + CONTEXT_WORDS] if i is not None]
        spans.append(Difference(speaker, at, " ".join(a_words), " ".join(b_words), " ".join(before),
                                " ".join(after)))  # fmt: skip
        index = end
    wer = word_error_rate(" ".join(ref_words), " ".join(hyp_words))
    score = SpeakerScore(speaker, len(ref_words), len(hyp_words), wer, counts["substitute"], counts["delete"],
                         counts["insert"])  # fmt: skip
    return score, spans


@dataclass(frozen=True)
class Reference:
    """A reference transcript: per speaker id (``by_speaker``) or one text for the whole meeting."""

    text: str
    by_speaker: Mapping[str, str] | None = None


_SPEAKER_LINE = re.compile(r"^\s*([^:\s]+)\s*:\s*(.*)$")


def parse_reference(text: str, speakers: Mapping[str, str]) -> Reference:
    """Read a reference file. ``speakers`` maps each name a line may start with (a speaker's id, and their
    username when known) to the speaker's id. Per speaker when every non-blank line is ``name: text`` with a
    known name; else one text."""
    lines = [line for line in text.splitlines() if line.strip()]
    matched = [_SPEAKER_LINE.match(line) for line in lines]
    if lines and all(m is not None and m.group(1) in speakers for m in matched):
        by_speaker: dict[str, str] = {}
        for m in matched:
            assert m is not None
            speaker = speakers[m.group(1)]
            by_speaker[speaker] = f"{by_speaker.get(speaker, '')} {m.group(2)}".strip()
        return Reference(text, by_speaker)
    return Reference(text)


@dataclass(frozen=True)
class ReferenceScore:
    run: str
    wer: float
    by_speaker: Mapping[str, float] | None = None


def score_against_reference(reference: Reference, run: str, turns: Sequence[Turn]) -> ReferenceScore:
    """A run's word error rate against a reference: over the meeting, and per speaker when the reference
    has speakers (then the meeting's rate is their errors over the reference's words)."""
    ordered = sorted(turns, key=lambda t: (t.start_ms, t.speaker_id))
    if reference.by_speaker is None:
        return ReferenceScore(run, word_error_rate(reference.text, " ".join(t.text for t in ordered)))
    spoken: dict[str, list[str]] = {}
    for turn in ordered:
        spoken.setdefault(turn.speaker_id, []).append(turn.text)
    rates, errors, words = {}, 0.0, 0
    for speaker, text in reference.by_speaker.items():
        rates[speaker] = word_error_rate(text, " ".join(spoken.get(speaker, [])))
        errors += rates[speaker] * len(normalize(text))
        words += len(normalize(text))
    return ReferenceScore(run, errors / words if words else 0.0, rates)
