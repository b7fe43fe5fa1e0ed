"""Dates said in a meeting ("by Friday", "next Tuesday", "end of the month", "in two weeks", "April 2nd",
"the tenth"), found in text and resolved against the meeting's date. Pure: no clock is read.

Conventions (docs/enrichment.md):
- a bare weekday ("Friday", "by Friday", "this Friday") is the first such day after the meeting's date;
- "next <weekday>" is that weekday in the next calendar week (weeks start on Monday);
- "<weekday> next week" / "next week on <weekday>" is that weekday of next week; "<weekday> week" ("Thursday
  week") and "<weekday> after next" are a week after the bare weekday; "a week today / tomorrow / on <weekday>"
  and "this time next week" add a week;
- "this week" / "end of the week" / "EOW" / "by the weekend" is this week's Friday (said at a weekend: the
  coming one), "next week" / "end of next week" next week's Friday, "the week after next" the Friday after;
  "start of next week" is next week's Monday; "over the weekend" the coming Sunday;
- "close of business" / "COB" / "end of play" / "by lunch" / "by noon" is the meeting's day; "first thing in
  the morning" / "overnight" the next day; "end of day on Friday" / "Friday EOD" is that Friday;
- "end of the month / quarter / year" ("month end", "EOM", "end of Q3") is its last day; "in N days / weeks /
  fortnights / months / hours", "N weeks from now" and "in N working days" add them (hours whole days only);
- "the Nth of next month" is that day of next month;
- a day of the month without a month ("the tenth") is the next such day on or after the meeting;
  a month and day without a year is this year's, or next year's when it has passed;
- vague phrases ("early next month", "in a few days", "in April", "soon") are recognised and resolve to
  nothing, so they are never read as a nearer exact date.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")  # fmt: skip
_MONTH_ABBREVIATIONS = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15,
            "twenty": 20, "twenty-four": 24, "thirty": 30, "thirty-six": 36, "forty-eight": 48, "seventy-two": 72,
            "couple of": 2, "a couple of": 2}  # fmt: skip
_ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                  "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
                  "eighteenth", "nineteenth", "twentieth"]  # fmt: skip
_ORDINALS = {w: i + 1 for i, w in enumerate(_ORDINAL_WORDS)}
_ORDINALS |= {f"twenty-{w}": 20 + i + 1 for i, w in enumerate(_ORDINAL_WORDS[:9])}
_ORDINALS |= {f"twenty {w}": 20 + i + 1 for i, w in enumerate(_ORDINAL_WORDS[:9])}
_ORDINALS |= {"thirtieth": 30, "thirty-first": 31, "thirty first": 31}

_WEEKDAY = "|".join(WEEKDAYS)
_MONTH = "|".join([*MONTHS, *sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True)])
_FULL_MONTH = "|".join(m for m in MONTHS if m != "may")  # "3rd December" without "of"; "the first may be" is no date
_ORDINAL = "|".join(sorted(_ORDINALS, key=len, reverse=True))
_DAY = rf"(?:(?P<{{name}}>[0-3]?\d)(?:st|nd|rd|th)?|(?P<{{name}}w>{_ORDINAL}))"
_COUNT = r"(?P<count>\d+|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + ")"
_UNIT = r"(?:business |working )?(?:day|week|fortnight|month|hour)"
_EOD = r"(?:the )?(?:end of (?:the )?(?:business )?day|\beod\b|\bcob\b|close of (?:business|play)|end of (?:business|play))"
_QUARTERS = {"q1": 1, "q2": 2, "q3": 3, "q4": 4, "first quarter": 1, "second quarter": 2, "third quarter": 3,
             "fourth quarter": 4}  # fmt: skip

# One alternation, longest phrases first; each branch has a name that _resolve understands.
_PATTERNS: list[tuple[str, str]] = [
    ("iso", r"(?P<iso>\d{4}-\d{2}-\d{2})"),
    ("vague", r"early next (?:week|month)|later (?:this|next) (?:week|month)|in a few (?:days|weeks)|"
              r"next few (?:days|weeks)|(?:the )?end of (?:the |this |next )?sprint|(?:this|next|the next) sprint|"
              r"(?:the )?(?:middle of|mid-?) ?(?:next|the|this) (?:week|month)|mid-?month|"
              r"(?:early|mid|late) (?:" + "|".join(MONTHS) + r")|soon|at some point"),
    ("weekday_eod", rf"{_EOD},? (?:on )?(?P<ew>{_WEEKDAY})|(?:on )?(?P<we>{_WEEKDAY}),? (?:at |by )?{_EOD}"),
    ("weekday_next_week", rf"(?P<wn>{_WEEKDAY}) (?:of )?next week|next week,? (?:on )?(?P<nwo>{_WEEKDAY})"),
    ("weekday_this_week", rf"(?P<wt>{_WEEKDAY}) (?:of )?this week"),
    ("week_from", rf"a week (?:from |on )?(?:(?:this|next) )?(?P<wf>{_WEEKDAY}|today|tomorrow)|"
                  rf"(?P<tnw>this time next week)"),
    ("weekday_week", rf"(?P<ww>{_WEEKDAY}) (?:week|after next)"),
    ("end_of_day_tomorrow", rf"{_EOD} tomorrow|tomorrow,? (?:by )?{_EOD}"),
    ("day_after_tomorrow", r"(?:the )?day after tomorrow"),
    ("from_now", _COUNT.replace("?P<count>", "?P<fncount>") + rf" (?P<fnunit>{_UNIT})s? from (?:now|today)"),
    ("today", rf"today|tonight|{_EOD}|\beob\b|this (?:morning|afternoon|evening)|"
              r"(?:by|before) (?:lunch(?:time)?|noon|midday)|"
              r"(?:right |directly |straight |just )?after (?:this|the) (?:meeting|call)|"
              r"(?:right |directly |straight )after this"),
    ("tomorrow", r"tomorrow(?: (?:morning|afternoon|evening|night))?|first thing in the morning|overnight"),
    ("end_of_week_after_next", r"(?:the )?(?:end of )?(?:the )?week after next"),
    ("start_of_next", r"(?:the )?(?:start|beginning) of next (?P<son>week|month)"),
    ("end_of_next", r"(?:the )?end of next (?P<eon>week|month|quarter|year)"),
    ("end_of_quarter_named", r"(?:the )?end of (?:the )?(?P<qn>q[1-4]|(?:first|second|third|fourth) quarter)"),
    ("end_of", r"(?:the )?end of (?:the |this )?(?P<eo>week|month|quarter|year)|(?P<eow>\beow\b)|"
               r"(?P<eom>\beom\b)|(?P<eoq>\beoq\b)|(?P<eoy>\beoy\b)|(?:the )?(?P<pe>month|quarter|year)[- ]end|"
               r"(?:by|before) the weekend"),
    ("weekend", r"(?:over|during) the weekend|this weekend"),
    ("this_week", r"this week"),
    ("next_week", r"next week"),
    ("next_month", r"next month"),
    ("in_count", rf"(?:(?:in|within) (?:the next )?|(?:the )?next ){_COUNT} (?P<unit>{_UNIT})s?"),
    ("weekday_day", rf"(?:(?:this|next|coming) )?(?:{_WEEKDAY}),? the " + _DAY.format(name="wd")),
    ("month_day", rf"(?P<month>{_MONTH})\.? (?:the )?" + _DAY.format(name="md")),
    ("day_of_next_month", "(?:the )?" + _DAY.format(name="dn") + r" of (?P<nm>next|this) month"),
    ("day_of_month", "(?:the )?" + _DAY.format(name="dm") + rf" (?:of (?P<month2>{_MONTH})|(?P<month3>{_FULL_MONTH}))"),
    ("next_weekday", rf"next (?P<nw>{_WEEKDAY})"),
    ("following_weekday", rf"the following (?P<fw>{_WEEKDAY})"),
    ("weekday", rf"(?:this |coming |on )?(?P<w>{_WEEKDAY})(?: (?:morning|afternoon|evening|night))?"),
    ("the_day", r"the " + _DAY.format(name="td")),
    ("month_only", rf"in (?:{'|'.join(MONTHS)})"),
]
_FINDER = re.compile(
    r"\b(?:" + "|".join(f"(?P<k_{name}>{pattern})" for name, pattern in _PATTERNS) + r")\b", re.IGNORECASE
)
_START_PREFIX = re.compile(r"\b(?:start(?:ing)?(?: on| from)?|from|beginning|begin(?: on)?|kick(?:ing)? off(?: on)?)\s*$",
                           re.IGNORECASE)  # fmt: skip
_DUE_PREFIX = re.compile(r"\b(?:by|before|until|till|due|no later than|for|on|at)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class DateMention:
    """A date phrase at ``start:end`` of the text; ``value`` None when the phrase is vague.
    ``role`` is ``start`` when introduced by "starting", "from" and the like, else ``due``; ``span`` covers
    the phrase with its introducing word ("by Friday"), for cutting it out of a description."""

    start: int
    end: int
    text: str
    value: date | None
    role: str
    span: tuple[int, int]


def find_dates(text: str, meeting_date: date | None) -> list[DateMention]:
    """Every date phrase of ``text`` in order, resolved against ``meeting_date`` (None: values are None)."""
    mentions = []
    for match in _FINDER.finditer(text):
        kind = next(name for name, _ in _PATTERNS if match.group(f"k_{name}") is not None)
        if (kind == "weekday" and _weekday_is_not_a_date(text, match)):
            continue
        value = _resolve(kind, match, meeting_date) if meeting_date else None
        before = text[: match.start()]
        start_prefix = _START_PREFIX.search(before)
        due_prefix = _DUE_PREFIX.search(before)
        prefix = start_prefix or due_prefix
        span_start = prefix.start() if prefix else match.start()
        mentions.append(DateMention(match.start(), match.end(), match.group(0), value,
                                    "start" if start_prefix else "due", (span_start, match.end())))  # fmt: skip
    return mentions


def _weekday_is_not_a_date(text: str, match: re.Match[str]) -> bool:
    """A weekday after "last" is past; after "the" it names a thing ("the Friday before Easter")."""
    return bool(re.search(r"\b(?:last|the)\s*$", text[: match.start()], re.IGNORECASE))


def _resolve(kind: str, m: re.Match[str], today: date) -> date | None:
    g = m.groupdict()
    match kind:
        case "iso":
            return date.fromisoformat(g["iso"])
        case "today":
            return today
        case "tomorrow" | "end_of_day_tomorrow":
            return today + timedelta(days=1)
        case "day_after_tomorrow":
            return today + timedelta(days=2)
        case "weekday_eod":
            return _after(today, (g["ew"] or g["we"]).lower())
        case "weekday_next_week":
            return _next_week_day(today, (g["wn"] or g["nwo"]).lower())
        case "weekday_this_week":
            day = today + timedelta(days=WEEKDAYS.index(g["wt"].lower()) - today.weekday())
            return day if day >= today else _after(today, g["wt"].lower())
        case "weekday_week":
            return _after(today, g["ww"].lower()) + timedelta(days=7)
        case "end_of_week_after_next":
            return _end_of("week", today, 2)
        case "start_of_next":
            if g["son"].lower() == "week":
                return _next_week_day(today, "monday")
            return _end_of("month", today, 0) + timedelta(days=1)
        case "end_of_quarter_named":
            quarter = _QUARTERS[g["qn"].lower()]
            year = today.year if quarter * 3 >= today.month else today.year + 1
            return date(year, quarter * 3, calendar.monthrange(year, quarter * 3)[1])
        case "weekend":
            return _after(today, "sunday")
        case "day_of_next_month":
            year, month = (today.year, today.month) if g["nm"].lower() == "this" else (
                (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1))
            day = _day(g["dn"], g["dnw"])
            return date(year, month, day) if 1 <= day <= calendar.monthrange(year, month)[1] else None
        case "week_from":
            if g["tnw"]:
                return today + timedelta(days=7)
            anchor = g["wf"].lower()
            base = today if anchor == "today" else today + timedelta(1) if anchor == "tomorrow" else _after(today, anchor)
            return base + timedelta(days=7)
        case "end_of":
            unit = g["eo"] or g["pe"] or ("month" if g["eom"] else "quarter" if g["eoq"] else "year" if g["eoy"] else "week")
            return _end_of(unit.lower(), today, 0)
        case "from_now":
            return _add(today, _count(g["fncount"]), g["fnunit"].lower())
        case "end_of_next":
            return _end_of(g["eon"].lower(), today, 1)
        case "this_week":
            return _end_of("week", today, 0)
        case "next_week":
            return _end_of("week", today, 1)
        case "next_month":
            return None  # a month is no deadline; "end of next month" is
        case "in_count":
            return _add(today, _count(g["count"]), g["unit"].lower())
        case "weekday_day":
            return _day_of_month(today, _day(g["wd"], g["wdw"]))
        case "month_day":
            return _month_day(today, _month(g["month"]), _day(g["md"], g["mdw"]))
        case "day_of_month":
            return _month_day(today, _month(g["month2"] or g["month3"]), _day(g["dm"], g["dmw"]))
        case "next_weekday":
            return _next_week_day(today, g["nw"].lower())
        case "following_weekday":
            return _after(today, g["fw"].lower()) + timedelta(days=7)
        case "weekday":
            return _after(today, g["w"].lower())
        case "the_day":
            return _day_of_month(today, _day(g["td"], g["tdw"]))
    return None  # vague, month_only


def _count(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else _NUMBERS[word]


def _day(digits: str | None, word: str | None) -> int:
    return int(digits) if digits else _ORDINALS[word.lower().replace("  ", " ")] if word else 0


def _month(name: str) -> int:
    name = name.lower().rstrip(".")
    return MONTHS.index(name) + 1 if name in MONTHS else _MONTH_ABBREVIATIONS[name]


def _after(today: date, weekday: str) -> date:
    """The first ``weekday`` strictly after ``today``."""
    return today + timedelta(days=(WEEKDAYS.index(weekday) - today.weekday() - 1) % 7 + 1)


def _next_week_day(today: date, weekday: str) -> date:
    monday_next = today + timedelta(days=7 - today.weekday())
    return monday_next + timedelta(days=WEEKDAYS.index(weekday))


def _end_of(unit: str, today: date, ahead: int) -> date:
    if unit == "week":  # its Friday; said at a weekend, the coming week's
        friday = today + timedelta(days=4 - today.weekday() + 7 * ahead)
        return friday if friday >= today else friday + timedelta(days=7)
    if unit == "month":
        year, month = divmod(today.month - 1 + ahead, 12)
        year, month = today.year + year, month + 1
        return date(year, month, calendar.monthrange(year, month)[1])
    if unit == "quarter":
        last_month = ((today.month - 1) // 3 + 1) * 3 + 3 * ahead
        year, month = today.year + (last_month - 1) // 12, (last_month - 1) % 12 + 1
        return date(year, month, calendar.monthrange(year, month)[1])
    return date(today.year + ahead, 12, 31)


def _add(today: date, count: int, unit: str) -> date:
    if unit.startswith(("business", "working")):
        day = today
        for _ in range(count):  # weekdays only
            day += timedelta(days=3 if day.weekday() == 4 else 2 if day.weekday() == 5 else 1)
        return day
    if unit == "hour":
        return today + timedelta(days=count // 24)
    if unit == "fortnight":
        return today + timedelta(weeks=2 * count)
    if unit == "day":
        return today + timedelta(days=count)
    if unit == "week":
        return today + timedelta(weeks=count)
    year, month = divmod(today.month - 1 + count, 12)
    year, month = today.year + year, month + 1
    return date(year, month, min(today.day, calendar.monthrange(year, month)[1]))


def _day_of_month(today: date, day: int) -> date | None:
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(3):
        if day <= calendar.monthrange(year, month)[1] and date(year, month, day) >= today:
            return date(year, month, day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _month_day(today: date, month: int, day: int) -> date | None:
    if not 1 <= day <= calendar.monthrange(today.year, month)[1]:
        return None
    candidate = date(today.year, month, day)
    return candidate if candidate >= today else date(today.year + 1, month, day)
