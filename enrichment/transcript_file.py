"""Reading a transcript file for ``palaver enrich``: the JSON export of a meeting (an object with a
``dialogues`` list of {speaker_name or speaker_id, start_ms, end_ms, text}) or plain text, one turn per line
as ``speaker: text``. Plain text has no timings: each turn is placed after the previous one at 150 words a
minute, so the timing metrics of such a file are estimates."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

from enrichment.model import Dialogue, MeetingTranscript

WORDS_PER_MINUTE = 150
PAUSE_MS = 500
_LINE = re.compile(r"^\s*(?:\[[\d:.]+\]\s*)?(?P<speaker>[^:]{1,80}?)\s*:\s*(?P<text>\S.*)$")


class TranscriptFileError(ValueError):
    """The file is not a transcript this reader understands; the message says where and why."""


def parse_transcript(text: str, meeting_date: date | None = None, participants: tuple[str, ...] = ()) -> MeetingTranscript:
    """A MeetingTranscript from a file's text. ``meeting_date`` and ``participants`` override the file's."""
    stripped = text.lstrip()
    if not stripped:
        raise TranscriptFileError("the file is empty")
    if stripped[0] in "{[":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise TranscriptFileError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return _from_json(data, meeting_date, participants)
    return _from_lines(text, meeting_date, participants)


def _from_lines(text: str, meeting_date: date | None, participants: tuple[str, ...]) -> MeetingTranscript:
    dialogues, clock = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise TranscriptFileError(f"line {number}: expected 'speaker: text', got {line.strip()[:60]!r}")
        words = len(m.group("text").split())
        duration = max(1000, round(words * 60000 / WORDS_PER_MINUTE))
        dialogues.append(Dialogue(dialogue_id=f"d{len(dialogues) + 1:04d}", speaker=m.group("speaker").strip(),
                                  start_ms=clock, end_ms=clock + duration, text=m.group("text").strip()))  # fmt: skip
        clock += duration + PAUSE_MS
    return MeetingTranscript(dialogues=tuple(dialogues), participants=participants, meeting_date=meeting_date)


def _from_json(data: Any, meeting_date: date | None, participants: tuple[str, ...]) -> MeetingTranscript:
    if not isinstance(data, dict) or not isinstance(data.get("dialogues"), list):
        raise TranscriptFileError("JSON input must be an object with a 'dialogues' list")
    meeting = data.get("meeting") if isinstance(data.get("meeting"), dict) else {}
    dialogues = []
    for i, raw in enumerate(data["dialogues"]):
        if not isinstance(raw, dict):
            raise TranscriptFileError(f"dialogues[{i}] is not an object")
        speaker = raw.get("speaker_name") or raw.get("speaker") or raw.get("speaker_id")
        text = raw.get("text")
        if not isinstance(speaker, str) or not speaker.strip():
            raise TranscriptFileError(f"dialogues[{i}] has no speaker_name or speaker_id")
        if not isinstance(text, str):
            raise TranscriptFileError(f"dialogues[{i}] has no text")
        start, end = raw.get("start_ms"), raw.get("end_ms")
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or start < 0 or end < start:
            raise TranscriptFileError(f"dialogues[{i}] needs whole start_ms <= end_ms, got {start!r}, {end!r}")
        dialogue_id = str(raw.get("dialogue_id") or raw.get("id") or f"d{i + 1:04d}")
        dialogues.append(Dialogue(dialogue_id=dialogue_id, speaker=speaker.strip(), start_ms=start, end_ms=end, text=text))
    found_date = meeting_date or _date(data, meeting)
    found_people = participants or _names(data.get("participants") or meeting.get("participants") or [])
    agenda = _agenda(data.get("agenda") or meeting.get("agenda") or [])
    title = data.get("title") or meeting.get("title") or ""
    return MeetingTranscript(dialogues=tuple(dialogues), participants=found_people, meeting_date=found_date,
                             agenda=agenda, title=str(title))  # fmt: skip


def _date(*sources: dict[str, Any]) -> date | None:
    for source in sources:
        for key in ("meeting_date", "date", "started_at", "created_at", "start_time"):
            value = source.get(key)
            if isinstance(value, str) and value:
                try:
                    return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if "T" in value else date.fromisoformat(value[:10])
                except ValueError:
                    raise TranscriptFileError(f"{key} {value!r} is not an ISO date") from None
    return None


def _names(raw: Any) -> tuple[str, ...]:
    names = []
    for entry in raw if isinstance(raw, list) else []:
        name = entry if isinstance(entry, str) else next(
            (entry.get(k) for k in ("name", "display_name", "speaker_name", "username") if isinstance(entry, dict) and entry.get(k)), None)
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return tuple(dict.fromkeys(names))


def _agenda(raw: Any) -> tuple[str, ...]:
    items = []
    for entry in raw if isinstance(raw, list) else []:
        title = entry if isinstance(entry, str) else entry.get("title") if isinstance(entry, dict) else None
        if isinstance(title, str) and title.strip():
            items.append(title.strip())
    return tuple(items)
