"""Dates said in meetings, resolved against the meeting's date (Wednesday 4 March 2026 here)."""

from __future__ import annotations

from datetime import date

import pytest

from enrichment.dates import find_dates

WEDNESDAY = date(2026, 3, 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("by Friday", date(2026, 3, 6)), ("on Monday", date(2026, 3, 9)), ("next Tuesday", date(2026, 3, 10)),
     ("next Thursday, the twelfth", date(2026, 3, 12)), ("tomorrow", date(2026, 3, 5)),
     ("by end of day tomorrow", date(2026, 3, 5)), ("this afternoon", WEDNESDAY), ("right after this", WEDNESDAY),
     ("end of the week", date(2026, 3, 6)), ("by the end of next week", date(2026, 3, 13)),
     ("end of the month", date(2026, 3, 31)), ("end of next month", date(2026, 4, 30)),
     ("end of the quarter", date(2026, 3, 31)), ("in two weeks", date(2026, 3, 18)),
     ("within 3 days", date(2026, 3, 7)), ("in the next couple of weeks", date(2026, 3, 18)),
     ("a week from Monday", date(2026, 3, 16)), ("April 2nd", date(2026, 4, 2)), ("the 14th of March", date(2026, 3, 14)),
     ("by the tenth", date(2026, 3, 10)), ("the third", date(2026, 4, 3)), ("January 5", date(2027, 1, 5)),
     ("Tuesday the seventeenth", date(2026, 3, 17)), ("2026-05-01", date(2026, 5, 1))],
)  # fmt: skip
def test_phrases_resolve_against_the_meeting_date(text: str, expected: date) -> None:
    found = [m.value for m in find_dates(text, WEDNESDAY) if m.value]
    assert found == [expected]


@pytest.mark.parametrize("text", ["early next month", "in a few days", "soon", "by the end of the sprint", "in April"])
def test_vague_phrases_are_recognised_and_resolve_to_nothing(text: str) -> None:
    mentions = find_dates(text, WEDNESDAY)
    assert mentions and all(m.value is None for m in mentions)


@pytest.mark.parametrize("text", ["last Monday it broke", "take the Friday before Easter off", "at 3 a.m.", "may I"])
def test_what_is_no_deadline_is_not_read_as_one(text: str) -> None:
    assert [m.value for m in find_dates(text, WEDNESDAY) if m.value] == []


def test_start_and_due_roles_and_the_span_that_cuts_them_out() -> None:
    text = "start on Monday and finish by Friday"
    start, due = find_dates(text, WEDNESDAY)
    assert (start.role, start.value, text[slice(*start.span)]) == ("start", date(2026, 3, 9), "start on Monday")
    assert (due.role, due.value, text[slice(*due.span)]) == ("due", date(2026, 3, 6), "by Friday")


def test_a_weekday_is_the_first_one_after_the_meeting_never_the_same_day() -> None:
    assert find_dates("by Wednesday", WEDNESDAY)[0].value == date(2026, 3, 11)
    assert find_dates("by Friday", None)[0].value is None


def test_n_units_from_now_add_them_like_in_n_units() -> None:
    assert [m.value for m in find_dates("two weeks from now", WEDNESDAY)] == [date(2026, 3, 18)]
    assert [m.value for m in find_dates("3 days from today", WEDNESDAY)] == [date(2026, 3, 7)]


def test_close_of_business_is_the_meetings_day_and_eow_its_friday() -> None:
    assert [m.value for m in find_dates("by close of business", WEDNESDAY)] == [WEDNESDAY]
    assert [m.value for m in find_dates("by COB", WEDNESDAY)] == [WEDNESDAY]
    assert [m.value for m in find_dates("by EOW", WEDNESDAY)] == [date(2026, 3, 6)]


def test_the_end_of_the_week_said_at_a_weekend_is_the_coming_friday() -> None:
    saturday = date(2026, 3, 7)
    assert [m.value for m in find_dates("by the end of the week", saturday)] == [date(2026, 3, 13)]
    assert [m.value for m in find_dates("by the end of next week", saturday)] == [date(2026, 3, 13)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("by end of day Friday", date(2026, 3, 6)), ("Friday EOD", date(2026, 3, 6)), ("COB tomorrow", date(2026, 3, 5)),
     ("Monday next week", date(2026, 3, 9)), ("next week on Tuesday", date(2026, 3, 10)),
     ("Friday of this week", date(2026, 3, 6)), ("Thursday week", date(2026, 3, 12)),
     ("Friday after next", date(2026, 3, 13)), ("a week today", date(2026, 3, 11)),
     ("a week tomorrow", date(2026, 3, 12)), ("a week on Friday", date(2026, 3, 13)),
     ("this time next week", date(2026, 3, 11)), ("by the weekend", date(2026, 3, 6)),
     ("over the weekend", date(2026, 3, 8)), ("the week after next", date(2026, 3, 20)),
     ("start of next week", date(2026, 3, 9)), ("beginning of next month", date(2026, 4, 1)),
     ("by the end of Q3", date(2026, 9, 30)), ("end of the first quarter", date(2026, 3, 31)),
     ("month end", date(2026, 3, 31)), ("by EOM", date(2026, 3, 31)), ("in a fortnight", date(2026, 3, 18)),
     ("within 48 hours", date(2026, 3, 6)), ("in twenty-four hours", date(2026, 3, 5)),
     ("in three working days", date(2026, 3, 9)), ("in 5 business days", date(2026, 3, 11)),
     ("in fifteen days", date(2026, 3, 19)), ("the first of next month", date(2026, 4, 1)),
     ("the 15th of this month", date(2026, 3, 15)), ("3rd December", date(2026, 12, 3)),
     ("the 14th of April", date(2026, 4, 14)), ("by lunch", WEDNESDAY), ("before noon", WEDNESDAY),
     ("by end of play", WEDNESDAY), ("first thing in the morning", date(2026, 3, 5)), ("overnight", date(2026, 3, 5))],
)  # fmt: skip
def test_more_spoken_deadlines_resolve(text: str, expected: date) -> None:
    assert [m.value for m in find_dates(text, WEDNESDAY) if m.value] == [expected]


@pytest.mark.parametrize("text", ["mid next week", "the middle of the month", "by the end of this sprint"])
def test_a_middle_is_vague_and_never_read_as_the_end(text: str) -> None:
    mentions = find_dates(text, WEDNESDAY)
    assert mentions and all(m.value is None for m in mentions)


def test_a_quarter_already_past_is_next_years_and_a_day_of_a_month_without_of_leaves_may_alone() -> None:
    assert [m.value for m in find_dates("by the end of Q1", date(2026, 5, 4))] == [date(2027, 3, 31)]
    assert [m.text for m in find_dates("the first may be tricky", WEDNESDAY)] == ["the first"]  # not "first may"


def test_a_due_word_is_a_whole_word_not_the_end_of_another() -> None:
    """"introduction next week": the "on" of "introduction" is no "on next week", so cutting the date out of
    a description leaves the word whole."""
    [mention] = find_dates("make an introduction next week", WEDNESDAY)
    assert mention.span == (mention.start, mention.end)
    [by] = find_dates("send it by Friday", WEDNESDAY)
    assert "send it by Friday"[slice(*by.span)] == "by Friday"
