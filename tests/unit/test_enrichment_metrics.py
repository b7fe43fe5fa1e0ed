"""Meeting metrics, checked against timings worked out by hand."""

from __future__ import annotations

from enrichment.metrics import meeting_metrics
from enrichment.model import Dialogue


def turn(i: int, speaker: str, start: int, end: int, text: str) -> Dialogue:
    return Dialogue(dialogue_id=f"d{i}", speaker=speaker, start_ms=start, end_ms=end, text=text)


def test_talk_overlap_interruptions_silence_and_monologue() -> None:
    m = meeting_metrics([
        turn(0, "Ann", 0, 10_000, "We start. Is everyone here?"),        # Ann 0-10 s
        turn(1, "Bob", 8_000, 14_000, "Yes. One thing first."),          # starts with 2 s of Ann left: an interruption
        turn(2, "Ann", 14_500, 15_000, "Go."),                           # ends 0.5 s after Bob began? no: after Bob ended
        turn(3, "Bob", 20_000, 30_000, "So the plan is simple and we ship on Friday, right?"),
        turn(4, "Bob", 31_000, 40_000, "And then we rest."),              # 1 s gap: one monologue with turn 3
        turn(5, "Ann", 39_800, 41_000, "Good."),                          # 0.2 s before Bob ends: no interruption
    ])  # fmt: skip
    assert m.duration_ms == 41_000
    assert (m.speakers["Ann"].talk_ms, m.speakers["Bob"].talk_ms) == (11_700, 25_000)
    assert m.overlap_ms == 2_000 + 200
    assert (m.interruptions, m.speakers["Bob"].interruptions, m.speakers["Ann"].interrupted) == (1, 1, 1)
    assert m.questions == 2 and m.speakers["Ann"].questions == 1
    assert m.longest_monologue is not None
    assert (m.longest_monologue.speaker, m.longest_monologue.start_ms, m.longest_monologue.end_ms) == ("Bob", 20_000, 40_000)
    assert (m.silence_ms, m.longest_silence_ms) == (500 + 5_000 + 1_000, 5_000)
    assert round(m.speakers["Ann"].share + m.speakers["Bob"].share, 3) == 1.0
    assert m.speakers["Bob"].words == 19 and m.speakers["Bob"].words_per_minute == round(19 / (25_000 / 60_000), 1)


def test_no_dialogues_give_zero_metrics() -> None:
    m = meeting_metrics([])
    assert (m.duration_ms, m.speakers, m.longest_monologue) == (0, {}, None)
