"""Comparing runs (palaver/run_compare.py), the word alignment behind it (palaver/textmetrics.py), and what
``palaver runs`` prints (stack/runs.py)."""

from __future__ import annotations

import random

import pytest

from palaver.run_compare import Reference, Turn, compare_runs, parse_reference, score_against_reference
from palaver.store.runs import RunSummary
from palaver.textmetrics import MAX_GAP_CELLS, align_words, normalize, word_error_rate
from stack.runs import clock, comparison_text, runs_table

A, B = "whisper:tiny.en", "whisper:tiny.en~5d1c0a7e"


def _errors(ops: list[tuple[str, int | None, int | None]]) -> int:
    return sum(op != "equal" for op, _, _ in ops)


def test_the_alignment_covers_both_texts_in_order_and_counts_the_word_error_rates_edits() -> None:
    rng = random.Random(7)
    vocabulary = ["the", "a", "budget", "office", "team", "release", "notes", "friday", "we", "can", "write", "them"]
    for _ in range(300):
        ref = [rng.choice(vocabulary) for _ in range(rng.randint(0, 14))]
        hyp = [rng.choice(vocabulary) for _ in range(rng.randint(0, 14))]
        ops = align_words(ref, hyp)
        assert [i for _, i, _ in ops if i is not None] == list(range(len(ref)))
        assert [j for _, _, j in ops if j is not None] == list(range(len(hyp)))
        assert all((op == "equal") == (i is not None and j is not None and ref[i] == hyp[j]) for op, i, j in ops)
        expected = round(word_error_rate(" ".join(ref), " ".join(hyp)) * len(ref)) if ref else len(hyp)
        assert _errors(ops) == expected, (ref, hyp)


def test_a_gap_too_large_for_the_table_is_aligned_pairwise() -> None:
    ref = [f"a{i}" for i in range(600)]
    hyp = [f"b{i}" for i in range(500)]
    assert len(ref) * len(hyp) > MAX_GAP_CELLS
    ops = align_words(ref, hyp)
    assert [op for op, _, _ in ops].count("substitute") == 500 and [op for op, _, _ in ops].count("delete") == 100


def _turns(*lines: tuple[str, int, str]) -> list[Turn]:
    return [Turn(speaker, start, text) for speaker, start, text in lines]


RUN_A = _turns(("ana", 0, "Welcome to the planning meeting."), ("ben", 3000, "The budget for the new office is approved."),
               ("ana", 7000, "We need a volunteer."))  # fmt: skip
RUN_B = _turns(("ana", 0, "Welcome to the planning meeting."), ("ben", 3000, "The budget for the new offices approved."),
               ("ana", 7100, "We need a volunteer today."), ("cho", 9000, "Me."))  # fmt: skip


def test_run_b_is_scored_against_run_a_per_speaker_with_the_words_that_differ() -> None:
    c = compare_runs(A, RUN_A, B, RUN_B)
    assert (c.a, c.b, c.words_a, c.words_b) == (A, B, 17, 18)
    scores = {s.speaker_id: s for s in c.speakers}
    assert [s.speaker_id for s in c.speakers] == ["ana", "ben", "cho"], "in order of their first words"
    assert scores["ana"].wer == pytest.approx(1 / 9) and scores["ana"].insertions == 1
    assert scores["ben"].wer == pytest.approx(2 / 8) and (scores["ben"].substitutions, scores["ben"].deletions) == (1, 1)
    assert scores["cho"].words_a == 0 and scores["cho"].wer == 1.0 and scores["cho"].insertions == 1
    assert c.wer == pytest.approx((1 + 2 + 1) / 17), "the speakers' errors over A's words"
    shown = [(d.speaker_id, d.at_ms, d.a, d.b, d.before, d.after) for d in c.differences]
    assert shown == [
        ("ben", 3000, "office is", "offices", "for the new", "approved"),
        ("ana", 7100, "", "today", "need a volunteer", ""),
        ("cho", 9000, "", "me", "", ""),
    ]


def test_a_run_against_itself_has_no_differences() -> None:
    c = compare_runs(A, RUN_A, A, RUN_A)
    assert c.wer == 0.0 and c.differences == () and all(s.wer == 0.0 for s in c.speakers)
    assert compare_runs(A, [], B, []).wer == 0.0


def test_a_reference_with_speakers_is_scored_per_speaker_else_as_one_text() -> None:
    names = {"ana": "usr_1", "usr_1": "usr_1", "ben": "usr_2", "usr_2": "usr_2"}
    per_speaker = parse_reference("ana: Welcome to the planning meeting.\n\nusr_2: The budget is approved.\n"
                                  "ana: We need a volunteer.\n", names)  # fmt: skip
    assert per_speaker.by_speaker == {"usr_1": "Welcome to the planning meeting. We need a volunteer.",
                                      "usr_2": "The budget is approved."}  # fmt: skip
    whole = parse_reference("Note: this line's speaker is nobody's.\nana: hello\n", names)
    assert whole.by_speaker is None and whole.text.startswith("Note:")
    turns = _turns(("usr_1", 0, "Welcome to the planning meeting."), ("usr_2", 3000, "The budget is approved."),
                   ("usr_1", 7000, "We need volunteers."))  # fmt: skip
    score = score_against_reference(per_speaker, B, turns)
    assert score.by_speaker == {"usr_1": pytest.approx(2 / 9), "usr_2": 0.0}
    assert score.wer == pytest.approx(2 / 13)
    as_text = score_against_reference(Reference("Welcome to the planning meeting. The budget is approved."), A, turns)
    assert as_text.wer == pytest.approx(word_error_rate(
        "Welcome to the planning meeting. The budget is approved.",
        "Welcome to the planning meeting. The budget is approved. We need volunteers."))  # fmt: skip


def _summary(run: str, first: int, last: int) -> RunSummary:
    return RunSummary(run, "whisper", "tiny.en", 3, 0, 4, 21, 2, 0, 8000, first, last)


def test_what_runs_list_and_compare_print() -> None:
    runs = {A: _summary(A, 1_000, 3_000), B: _summary(B, 50_000, 51_000)}
    table = runs_table("mtg_1", list(runs.values())).splitlines()
    assert table[0] == "meeting mtg_1: 2 run(s)"
    assert table[1].split() == ["RUN", "KIND", "FINAL", "LIVE", "UTTERANCES", "WORDS", "SPEAKERS", "MEDIA", "PACE"]
    assert table[2].split() == [A, "live", "3", "0", "4", "21", "2", "0:00.0-0:08.0", "4.0x"]
    assert table[3].split()[:2] == [B, "replay"] and table[3].endswith("8.0x")
    text = comparison_text("mtg_1", compare_runs(A, RUN_A, B, RUN_B), runs, {"ben": "benji"})
    assert f"meeting mtg_1: run B {B} against run A {A}" in text
    assert "WER 23.5% (17 words in A, 18 in B)" in text
    assert "  benji (ben): WER 25.0% (8 words in A, 7 in B; 1 substituted, 1 deleted, 0 inserted)" in text
    assert "    0:03.0  benji: ...for the new [-office is-]{+offices+} approved..." in text
    assert "    0:07.1  ana: ...need a volunteer {+today+}..." in text
    assert "latency: not in the store" in text and "pace (media time over the time" in text and "A 4.0x, B 8.0x" in text
    assert "no words differ" in comparison_text("mtg_1", compare_runs(A, RUN_A, A, RUN_A), runs, {})


def test_media_clock() -> None:
    assert [clock(ms) for ms in (None, 0, 3050, 61_999, 3_600_000 + 5_100)] == ["-", "0:00.0", "0:03.0", "1:01.9",
                                                                              "1:00:05.1"]  # fmt: skip
    assert normalize("Offices, approved!") == ["offices", "approved"]
