"""What a remote backend asks a language model, and how its answers become an ``Enrichment``'s parts. Pure
functions, no I/O: the transcript as numbered lines, those lines packed into parts of at most
``max_chars`` (map-reduce over a long meeting: nothing is cut), the prompts, the JSON schemas of the
structured answers, and their validation.

Every turn is one line ``#<turn> [m:ss] Speaker: text``; the model names turns by number (an action item's
``turns``, a topic's ``first_turn`` and ``last_turn``), which map back to dialogue ids and times."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from enrichment.model import ActionItem, AgendaTopic, Dialogue, MeetingTranscript
from enrichment.text import split_sentences

BRIEF_MAX = 5
KEYWORDS_MAX = 10

SYSTEM = (
    "You turn meeting transcripts into meeting notes. Use only what the transcript says; never invent "
    "people, dates, figures or decisions. Each transcript line is '#<turn> [m:ss] Speaker: text'. "
    "Write in the language of the transcript."
)


class InvalidOutput(ValueError):
    """The model's answer is not the JSON asked for; the message says what is wrong."""


# -- the transcript as lines, and its parts ----------------------------------------------------------------


def ordered_dialogues(transcript: MeetingTranscript) -> list[Dialogue]:
    return sorted(transcript.dialogues, key=lambda d: (d.start_ms, d.end_ms))


def _clock(ms: int) -> str:
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass(frozen=True)
class Line:
    turn: int
    text: str


def transcript_lines(dialogues: Sequence[Dialogue], max_chars: int) -> list[Line]:
    """One line per turn; a turn longer than ``max_chars`` becomes several lines with the same prefix, cut
    between sentences (between words for a longer sentence), so that no line is longer than ``max_chars``
    and every word is kept."""
    lines = []
    for turn, d in enumerate(dialogues):
        prefix = f"#{turn} [{_clock(d.start_ms)}] {d.speaker}: "
        room = max(max_chars - len(prefix), 20)
        for piece in _pieces(" ".join(d.text.split()), room):
            lines.append(Line(turn, prefix + piece))
    return lines


def _pieces(text: str, room: int) -> list[str]:
    if len(text) <= room:
        return [text]
    pieces: list[str] = []
    current = ""
    for unit in _units(text, room):
        if current and len(current) + 1 + len(unit) > room:
            pieces.append(current)
            current = unit
        else:
            current = f"{current} {unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, room: int) -> list[str]:
    """Sentences, a sentence longer than ``room`` as runs of words, a word longer than it cut."""
    units = []
    for sentence in split_sentences(text) or [text]:
        if len(sentence) <= room:
            units.append(sentence)
            continue
        for word in sentence.split():
            units.extend(word[i:i + room] for i in range(0, len(word), room))
    return units


def pack(lines: Sequence[Line], max_chars: int) -> list[list[Line]]:
    """Consecutive lines in parts of at most ``max_chars`` characters (newlines counted), in order; every
    line in exactly one part."""
    parts: list[list[Line]] = []
    size = 0
    for line in lines:
        if parts and size + 1 + len(line.text) <= max_chars:
            parts[-1].append(line)
            size += 1 + len(line.text)
        else:
            parts.append([line])
            size = len(line.text)
    return parts


# -- prompts -------------------------------------------------------------------------------------------------


def context(transcript: MeetingTranscript) -> str:
    """What every prompt says about the meeting: its date, the people, the planned agenda."""
    people = ", ".join(transcript.people()) or "(none named)"
    day = transcript.meeting_date
    when = (f"The meeting took place on {day.isoformat()} ({day.strftime('%A')}); resolve relative dates "
            f"('by Friday', 'next Tuesday') against it." if day else
            "The meeting's date is unknown: give a date only where the transcript says it in full.")  # fmt: skip
    lines = [f"Title: {transcript.title}" if transcript.title else "", f"Participants: {people}.", when]
    if transcript.agenda:
        lines.append("Planned agenda: " + "; ".join(transcript.agenda) + ".")
    return "\n".join(line for line in lines if line)


def extraction_prompt(transcript: MeetingTranscript, part: Sequence[Line], index: int, parts: int) -> str:
    where = "" if parts == 1 else f"This is part {index + 1} of {parts} of the transcript, in order.\n"
    return (
        f"{context(transcript)}\n{where}\n"
        "From the transcript below, give:\n"
        f"- brief: at most {BRIEF_MAX} short bullet points (no leading dash) of what matters most;\n"
        "- notes: the key points, decisions and figures, one short sentence each, in the order said;\n"
        "- action_items: each task someone agreed to do or was asked to do (not tasks that were cancelled): "
        "description (imperative, short), assignee (exactly one of the participants' names, or \"\" when "
        "the transcript does not make it clear who), start_date and due_date (YYYY-MM-DD or null; null for "
        "vague phrases like 'soon'), priority (high for urgent/asap, low for no rush, else normal), turns "
        "(the turn numbers that say it);\n"
        f"- keywords: at most {KEYWORDS_MAX} topic phrases of one to three words (no people's names);\n"
        "- topics: the stretches of the meeting about one thing, in order: title, first_turn, last_turn, "
        "agenda_item (the planned agenda item it covers, exactly as written, or null).\n\n"
        "Transcript:\n" + "\n".join(line.text for line in part)
    )


def reduce_prompt(transcript: MeetingTranscript, briefs: Sequence[Sequence[str]], keywords: Sequence[str]) -> str:
    parts = "\n".join(f"Part {i + 1}:\n" + "\n".join(f"- {b}" for b in brief) for i, brief in enumerate(briefs))
    return (
        f"{context(transcript)}\n\nThe meeting was long and was read in {len(briefs)} parts; below are each "
        f"part's main points and the keywords found.\nGive brief: at most {BRIEF_MAX} bullet points (no "
        f"leading dash) for the whole meeting, and keywords: the {KEYWORDS_MAX} most telling of the "
        f"keywords, best first.\n\n{parts}\n\nKeywords: {', '.join(keywords)}"
    )


def summary_prompt(transcript: MeetingTranscript, source: str, topics: Sequence[AgendaTopic],
                   items: Sequence[ActionItem]) -> str:  # fmt: skip
    """The streamed detailed summary. ``source`` is the whole transcript (one part) or the parts' notes."""
    titles = "\n".join(f"- {t.title}" for t in topics) or "- (find them yourself)"
    tasks = "\n".join(f"- {i.description} ({i.assignee or 'unassigned'}"
                      f"{', due ' + i.due_date.isoformat() if i.due_date else ''})" for i in items) or "- none"  # fmt: skip
    return (
        f"{context(transcript)}\n\nWrite the detailed summary of the meeting in Markdown: one '### ' section "
        "per topic below, in order, each a few bullet points naming who said what; then '### Decisions' "
        "(omit it when nothing was decided) and '### Action items' (one '- [ ] ' line per task below). "
        "Only Markdown, no preamble.\n\n"
        f"Topics:\n{titles}\n\nAction items:\n{tasks}\n\n{source}"
    )


# -- schemas and validation ---------------------------------------------------------------------------------


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def extraction_schema(people: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of ``extraction_prompt``'s answer (strict: every property required, no others)."""
    nullable_date = {"type": ["string", "null"], "description": "YYYY-MM-DD or null"}
    item = {
        "type": "object", "additionalProperties": False,
        "required": ["description", "assignee", "start_date", "due_date", "priority", "turns"],
        "properties": {
            "description": {"type": "string"},
            "assignee": {"type": "string", "enum": [*people, ""]},
            "start_date": nullable_date, "due_date": nullable_date,
            "priority": {"type": "string", "enum": ["high", "normal", "low"]},
            "turns": {"type": "array", "items": {"type": "integer"}},
        },
    }  # fmt: skip
    topic = {
        "type": "object", "additionalProperties": False,
        "required": ["title", "first_turn", "last_turn", "agenda_item"],
        "properties": {"title": {"type": "string"}, "first_turn": {"type": "integer"},
                       "last_turn": {"type": "integer"}, "agenda_item": {"type": ["string", "null"]}},
    }  # fmt: skip
    return {
        "type": "object", "additionalProperties": False,
        "required": ["brief", "notes", "action_items", "keywords", "topics"],
        "properties": {"brief": _strings("main points"), "notes": _strings("key points in order"),
                       "action_items": {"type": "array", "items": item}, "keywords": _strings("topic phrases"),
                       "topics": {"type": "array", "items": topic}},
    }  # fmt: skip


REDUCE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["brief", "keywords"],
    "properties": {"brief": _strings("main points"), "keywords": _strings("topic phrases, best first")},
}  # fmt: skip


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class RawItem(_Answer):
    description: str
    assignee: str
    start_date: str | None
    due_date: str | None
    priority: Literal["high", "normal", "low"]
    turns: list[int]


class RawTopic(_Answer):
    title: str
    first_turn: int
    last_turn: int
    agenda_item: str | None


class Extraction(_Answer):
    brief: list[str]
    notes: list[str]
    action_items: list[RawItem]
    keywords: list[str]
    topics: list[RawTopic]


class Reduction(_Answer):
    brief: list[str]
    keywords: list[str]


def parse_answer(content: str, model: type[_Answer]) -> Any:
    """The model's JSON answer as ``model``; raises InvalidOutput. A Markdown code fence around the JSON
    (some servers without structured output add one) is tolerated."""
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not JSON: {exc.msg} at character {exc.pos}") from None
    try:
        answer = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        raise InvalidOutput(f"not the schema: {where}: {first['msg']}") from None
    if isinstance(answer, Extraction):
        for item in answer.action_items:
            _iso(item.start_date, "start_date")
            _iso(item.due_date, "due_date")
    return answer


def _iso(value: str | None, field: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidOutput(f"not the schema: action_items.{field}: {value!r} is not YYYY-MM-DD") from None


def resolve_assignee(name: str, people: Sequence[str]) -> str:
    """The participant ``name`` means: the same name ignoring case, else the one participant whose first or
    last name it is; "" when none or several fit (never a name outside the participants)."""
    wanted = " ".join(name.split()).casefold()
    if not wanted:
        return ""
    for person in people:
        if person.casefold() == wanted:
            return person
    fits = [p for p in people if wanted in (p.split()[0].casefold(), p.split()[-1].casefold())] if " " not in wanted else []
    return fits[0] if len(fits) == 1 else ""


def action_items(raw: Sequence[RawItem], dialogues: Sequence[Dialogue], people: Sequence[str]) -> list[ActionItem]:
    """Validated raw items as ActionItems: assignees resolved to participants, dates parsed, turns mapped to
    dialogue ids (numbers outside the transcript dropped); the same description twice kept once."""
    out: list[ActionItem] = []
    seen: set[str] = set()
    for item in raw:
        description = " ".join(item.description.split())
        key = description.casefold().rstrip(".")
        if not description or key in seen:
            continue
        seen.add(key)
        ids = tuple(dict.fromkeys(dialogues[t].dialogue_id for t in item.turns if 0 <= t < len(dialogues)))
        out.append(ActionItem(description=description, assignee=resolve_assignee(item.assignee, people),
                              start_date=_iso(item.start_date, "start_date"), due_date=_iso(item.due_date, "due_date"),
                              priority=item.priority, dialogue_ids=ids))  # fmt: skip
    return out


def agenda(raw: Sequence[RawTopic], dialogues: Sequence[Dialogue], planned: Sequence[str]) -> list[AgendaTopic]:
    """Topics with turn numbers inside the transcript, as AgendaTopics in order of their first turn; a
    topic's ``agenda_item`` kept only when it is one of the planned items (compared ignoring case). A topic
    with the title of the one before it (a topic that went on across two parts of a long meeting) joins it."""
    by_key = {p.casefold(): p for p in planned}
    spans: list[tuple[str, int, int, str | None]] = []  # title, first turn, last turn, planned item
    for topic in sorted(raw, key=lambda t: t.first_turn):
        first, last = max(topic.first_turn, 0), min(topic.last_turn, len(dialogues) - 1)
        title, item = topic.title.strip(), by_key.get((topic.agenda_item or "").strip().casefold())
        if first > last or not title:
            continue
        if spans and spans[-1][0].casefold() == title.casefold():
            before = spans.pop()
            first, last, item = min(before[1], first), max(before[2], last), before[3] or item
        spans.append((title, first, last, item))
    out = []
    for title, first, last, item in spans:
        turns = dialogues[first:last + 1]
        out.append(AgendaTopic(title=title, start_ms=turns[0].start_ms, end_ms=max(d.end_ms for d in turns),
                               agenda_item=item, dialogue_ids=tuple(d.dialogue_id for d in turns)))  # fmt: skip
    return out


def keyword_list(phrases: Sequence[str], people: Sequence[str], limit: int = KEYWORDS_MAX) -> list[str]:
    """Phrases in order, once each (ignoring case), without the participants' names, at most ``limit``."""
    names = {part.casefold() for p in people for part in (p, *p.split())}
    out: dict[str, str] = {}
    for phrase in phrases:
        clean = " ".join(phrase.split()).strip(".,;:")
        if clean and clean.casefold() not in names:
            out.setdefault(clean.casefold(), clean)
    return list(out.values())[:limit]


def bullets(points: Sequence[str], limit: int = BRIEF_MAX) -> str:
    """Markdown bullet list of the first ``limit`` non-empty points (a leading dash or star removed)."""
    clean = [" ".join(p.split()).lstrip("-*• ").strip() for p in points]
    return "\n".join(f"- {p}" for p in [c for c in clean if c][:limit])
