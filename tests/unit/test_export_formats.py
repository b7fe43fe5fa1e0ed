"""Meeting exports (api/export_formats.py): cue splitting and timing, escaping, times past an hour, an empty
meeting, file names, and each format's layout."""

from __future__ import annotations

import re
from itertools import pairwise
from urllib.parse import unquote

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from api.export_formats import (
    CUE_MAX_MS,
    CUE_WIDTH,
    Cue,
    ExportDialogue,
    MeetingExport,
    Person,
    clock,
    content_disposition,
    markdown_escape,
    participants_and_speakers,
    split_cues,
    srt_escape,
    srt_time,
    to_json,
    to_markdown,
    to_srt,
    to_vtt,
    vtt_escape,
    vtt_time,
)

LONG = ("We looked at the numbers for the third quarter and they are better than we feared. "
        "Sales in the north went up by a fifth, and the south held steady despite the weather. "
        "Next we should talk about hiring, because the support team is short of people.")  # fmt: skip


def _dialogue(text: str, start_ms: int = 0, end_ms: int = 2000, name: str = "ana", dialogue_id: str = "d1",
              speaker_id: str = "usr_a", edited: bool = False) -> ExportDialogue:  # fmt: skip
    return ExportDialogue(dialogue_id, speaker_id, name, start_ms, end_ms, text, edited)


def _meeting(*dialogues: ExportDialogue, title: str = "Weekly sync", live: int = 0) -> MeetingExport:
    people = participants_and_speakers([Person("usr_a", "ana"), Person("usr_b", "bo")], dialogues)
    return MeetingExport("mtg_1", title, "usr_a", 1_767_623_400_000, None, None, people, "whisper:tiny.en",
                         tuple(dialogues), live)  # fmt: skip


def _all_lines(cues: list[Cue]) -> list[str]:
    return [line for cue in cues for line in cue.lines]


def _cue_text(cue_lines: tuple[str, ...]) -> str:
    return " ".join(cue_lines)


# --- times -----------------------------------------------------------------------------------------------


def test_clock_is_minutes_then_hours() -> None:
    assert clock(0) == "00:00"
    assert clock(65_999) == "01:05"
    assert clock(3_599_999) == "59:59"
    assert clock(3_600_000) == "1:00:00"
    assert clock(36_061_000) == "10:01:01"
    assert clock(-5) == "00:00"


def test_subtitle_timestamps_have_hours_and_milliseconds() -> None:
    assert srt_time(0) == "00:00:00,000"
    assert vtt_time(0) == "00:00:00.000"
    assert srt_time(3_723_004) == "01:02:03,004"
    assert vtt_time(3_723_004) == "01:02:03.004"
    assert vtt_time(100 * 3_600_000 + 1) == "100:00:00.001"


# --- cue splitting and timing ----------------------------------------------------------------------------


def test_a_short_dialogue_is_one_cue_over_its_span() -> None:
    (cue,) = split_cues("  Hello   there.\n", 1000, 2500)
    assert (cue.start_ms, cue.end_ms, cue.lines) == (1000, 2500, ("Hello there.",))


def test_blank_text_gives_no_cue() -> None:
    assert split_cues(" \n\t", 0, 1000) == []


def test_a_long_dialogue_is_cut_into_readable_cues() -> None:
    cues = split_cues(LONG, 10_000, 40_000)
    assert len(cues) > 1
    assert " ".join(_cue_text(c.lines) for c in cues) == LONG, "every word once, in order"
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= CUE_WIDTH for line in cue.lines), cue
        assert cue.end_ms - cue.start_ms <= CUE_MAX_MS + 1, cue


def test_cues_end_at_sentence_ends_where_sentences_fit() -> None:
    text = "The build is green again. We shipped the fix on Monday. Nobody has complained since then."
    cues = split_cues(text, 0, 9_000)
    assert [_cue_text(c.lines) for c in cues] == [
        "The build is green again. We shipped the fix on Monday.", "Nobody has complained since then."]


def test_a_sentence_longer_than_a_cue_is_cut_into_even_parts() -> None:
    sentence = "We looked at the numbers for the third quarter and they are better than we feared."
    cues = split_cues(sentence, 0, 6_000)
    assert [_cue_text(c.lines) for c in cues] == [
        "We looked at the numbers for the third", "quarter and they are better than we feared."]


def test_cue_times_follow_characters_and_never_overlap() -> None:
    cues = split_cues(LONG, 10_000, 40_000)
    assert cues[0].start_ms == 10_000 and cues[-1].end_ms == 40_000
    for earlier, later in pairwise(cues):
        assert earlier.end_ms == later.start_ms, "each cue ends where the next begins"
    total = len(LONG)
    offset = 0
    for cue in cues:
        share = (cue.start_ms - 10_000) / 30_000
        assert abs(share - offset / total) < 0.001, "a cue starts as far into the span as its text into the dialogue"
        offset += len(_cue_text(cue.lines)) + 1


def test_a_slow_dialogue_is_cut_by_time_too() -> None:
    text = "Well. I think. We should. Maybe. Wait. For them."
    cues = split_cues(text, 0, 40_000)  # short enough for one cue, but 40 s long
    assert len(cues) > 1
    assert all(c.end_ms - c.start_ms <= CUE_MAX_MS + 1 for c in cues), cues


def test_a_short_sentence_before_a_long_one_is_not_a_cue_of_its_own() -> None:
    sentence = "We looked at the numbers for the third quarter and they are better than we feared."
    cues = split_cues(f"Thanks. {sentence} Good.", 0, 8_000)
    assert [_cue_text(c.lines) for c in cues] == [
        "Thanks. We looked at the numbers for the third", "quarter and they are better than we feared. Good."]


def test_a_word_longer_than_a_line_is_cut() -> None:
    word = "x" * 100
    cues = split_cues(word, 0, 3000)
    assert "".join("".join(c.lines) for c in cues) == word
    assert all(len(line) <= CUE_WIDTH for c in cues for line in c.lines)


def test_the_first_line_leaves_room_for_a_name() -> None:
    cues = split_cues(LONG, 0, 60_000, first_line_reserve=len("ana: "))
    assert all(len(c.lines[0]) <= CUE_WIDTH - 5 for c in cues)


def test_a_dialogue_without_duration_keeps_its_words() -> None:
    cues = split_cues(LONG, 5000, 5000)
    assert " ".join(_cue_text(c.lines) for c in cues) == LONG
    assert all(c.start_ms == c.end_ms == 5000 for c in cues)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefghij.!?,é", min_size=1, max_size=60), min_size=1, max_size=80),
       start=st.integers(0, 10_000_000), length=st.integers(0, 200_000))  # fmt: skip
def test_cues_cover_the_dialogue_in_order_within_its_span(words: list[str], start: int, length: int) -> None:
    text = " ".join(words)
    cues = split_cues(text, start, start + length)
    assert "".join(c.replace(" ", "") for c in _all_lines(cues)) == "".join(words), "every character, in order"
    assert cues[0].start_ms == start and cues[-1].end_ms == start + length
    for cue in cues:
        assert start <= cue.start_ms <= cue.end_ms <= start + length
        assert 1 <= len(cue.lines) <= 2 and all(0 < len(line) <= CUE_WIDTH for line in cue.lines)
        several_words = len(_cue_text(cue.lines).split(" ")) > 1
        assert not several_words or cue.end_ms - cue.start_ms <= CUE_MAX_MS + 1, cue
    for earlier, later in pairwise(cues):
        assert earlier.end_ms <= later.start_ms


# --- escaping --------------------------------------------------------------------------------------------


def test_vtt_escapes_markup_and_arrows() -> None:
    assert vtt_escape("a < b && c > d --> e") == "a &lt; b &amp;&amp; c &gt; d --&gt; e"


def test_srt_never_carries_an_arrow() -> None:
    assert srt_escape("go ---> there --> now") == "go -> there -> now"
    assert "-->" not in srt_escape("-" * 7 + ">>")


def test_markdown_shows_text_as_written() -> None:
    assert markdown_escape("*bold* _it_ [link](x) <b> # | ~ `c` \\") == (
        "\\*bold\\* \\_it\\_ \\[link\\](x) \\<b\\> \\# \\| \\~ \\`c\\` \\\\"
    )
    assert markdown_escape("usr_1a snake_case _x_ y_ __init__") == "usr_1a snake_case \\_x\\_ y\\_ \\_\\_init\\_\\_"
    assert markdown_escape("AT&T &amp; &#38;\nnext line") == "AT&T \\&amp; \\&\\#38; next line"


# --- formats ---------------------------------------------------------------------------------------------


def test_markdown_has_title_date_participants_and_a_paragraph_per_dialogue() -> None:
    export = _meeting(_dialogue("Hello there.", 5_000, 6_000),
                      _dialogue("Right *now*.", 3_725_000, 3_726_000, name="bo", dialogue_id="d2", speaker_id="usr_b"),
                      title="Plan <Q3>", live=1)  # fmt: skip
    assert to_markdown(export) == (
        "# Plan \\<Q3\\>\n\n"
        "- Date: 2026-01-05 14:30 UTC\n- Participants: ana, bo\n\n"
        "_Not included: 1 dialogue still being transcribed._\n\n"
        "**ana** (00:05): Hello there.\n\n"
        "**bo** (1:02:05): Right \\*now\\*.\n"
    )


def test_an_empty_meeting_exports_in_every_format() -> None:
    export = _meeting()
    assert to_markdown(export).endswith("- Participants: ana, bo\n\n_No final dialogues yet._\n")
    assert to_srt(export) == ""
    assert to_vtt(export) == "WEBVTT\n"
    assert to_json(export)["dialogues"] == []


def test_json_has_the_metadata_and_every_dialogue_as_stored() -> None:
    export = _meeting(_dialogue("Edited <text>.", 0, 900, edited=True))
    found = orjson.loads(orjson.dumps(to_json(export)))
    assert found["meeting"] == {"meeting_id": "mtg_1", "title": "Weekly sync", "owner_id": "usr_a",
                                "created_at_ms": 1_767_623_400_000, "scheduled_start_ms": None, "ended_at_ms": None,
                                "participants": [{"user_id": "usr_a", "name": "ana"},
                                                 {"user_id": "usr_b", "name": "bo"}]}  # fmt: skip
    assert found["run"] == "whisper:tiny.en" and found["live_dialogues_left_out"] == 0
    assert found["dialogues"] == [{"dialogue_id": "d1", "speaker_id": "usr_a", "speaker_name": "ana", "start_ms": 0,
                                   "end_ms": 900, "text": "Edited <text>.", "edited": True}]  # fmt: skip


def test_srt_numbers_cues_and_names_the_speaker() -> None:
    export = _meeting(_dialogue("Hi --> you.", 1_000, 2_000),
                      _dialogue("Yes.", 3_600_000, 3_601_500, name="bo", dialogue_id="d2"))  # fmt: skip
    assert to_srt(export) == (
        "1\n00:00:01,000 --> 00:00:02,000\nana: Hi -> you.\n\n"
        "2\n01:00:00,000 --> 01:00:01,500\nbo: Yes.\n"
    )


def test_vtt_has_a_header_and_voice_spans() -> None:
    export = _meeting(_dialogue("a < b & c", 0, 1_000, name="ana <x>"))
    assert to_vtt(export) == "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n<v ana &lt;x&gt;>a &lt; b &amp; c\n"


def test_cues_of_every_dialogue_are_in_order_of_start() -> None:
    export = _meeting(_dialogue(LONG, 0, 30_000), _dialogue("Me too.", 4_000, 5_000, name="bo", dialogue_id="d2"))
    starts = [vtt_time_ms(m) for m in re.findall(r"^(\S+) --> ", to_vtt(export), flags=re.M)]
    assert starts == sorted(starts) and len(starts) > 2
    assert "<v bo>Me too." in to_vtt(export)


def vtt_time_ms(stamp: str) -> int:
    hours, minutes, rest = stamp.split(":")
    seconds, millis = rest.split(".")
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


# --- file names ------------------------------------------------------------------------------------------


def test_file_name_is_safe_in_ascii_and_exact_in_utf8() -> None:
    header = content_disposition('Q3 "Plan" / Zürich\r\nX-Evil: 1', "md")
    assert header.startswith('attachment; filename="Q3 Plan Zurich X-Evil 1.md"; filename*=UTF-8\'\'')
    assert "\r" not in header and "\n" not in header
    assert unquote(header.split("''", 1)[1]) == "Q3 Plan Zürich X-Evil 1.md"
    assert header.isascii()


def test_a_title_with_nothing_ascii_falls_back_to_meeting() -> None:
    header = content_disposition("会議", "vtt")
    assert header.startswith('attachment; filename="meeting.vtt"; ')
    assert unquote(header.split("''", 1)[1]) == "会議.vtt"
    assert content_disposition("../..", "srt").startswith('attachment; filename="meeting.srt"')
