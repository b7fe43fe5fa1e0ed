"""What a language model answers, checked and made into an ``Enrichment``'s parts. Pure functions, no I/O:
the JSON schemas of the structured answers (strict: every property required, no others), their validation
(``parse_answer`` raises InvalidOutput), and the conversion: assignees resolved to participants, turn
numbers mapped to dialogues, tasks and topics said twice kept once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from enrichment.model import ActionItem, AgendaTopic, Dialogue
from enrichment.prompts import BRIEF_MAX, KEYWORDS_MAX


class InvalidOutput(ValueError):
    """The model's answer is not the JSON asked for; the message says what is wrong."""



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


def unfenced(content: str) -> str:
    """``content`` without a Markdown code fence around it (some servers without structured output add
    one)."""
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def parse_answer(content: str, model: type[_Answer]) -> Any:
    """The model's JSON answer as ``model``; raises InvalidOutput. A Markdown code fence around the JSON
    (some servers without structured output add one) is tolerated."""
    try:
        data = json.loads(unfenced(content))
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
    if " " in wanted:
        return ""
    fits = [p for p in people if wanted in (p.split()[0].casefold(), p.split()[-1].casefold())]
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
        out.append(ActionItem(
            description=description, assignee=resolve_assignee(item.assignee, people),
            start_date=_iso(item.start_date, "start_date"), due_date=_iso(item.due_date, "due_date"),
            priority=item.priority, dialogue_ids=ids,
        ))  # fmt: skip
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
