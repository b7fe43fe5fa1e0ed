"""What a remote backend asks a language model. Pure functions, no I/O: the transcript as numbered lines,
those lines packed into parts of at most ``max_chars`` (map-reduce over a long meeting: nothing is cut), and
the prompts. enrichment/answers.py has the answers' schemas and their validation.

Every turn is one line ``#<turn> [m:ss] Speaker: text``; the model names turns by number (an action item's
``turns``, a topic's ``first_turn`` and ``last_turn``), which map back to dialogue ids and times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from enrichment.model import ActionItem, AgendaTopic, Dialogue, MeetingTranscript
from enrichment.text import split_sentences

BRIEF_MAX = 5
KEYWORDS_MAX = 10

SYSTEM = (
    "You turn meeting transcripts into meeting notes. Use only what the transcript says; never invent "
    "people, dates, figures or decisions. Each transcript line is '#<turn> [m:ss] Speaker: text'. "
    "Write in the language of the transcript."
)


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
    tasks = "\n".join(
        f"- {i.description} ({i.assignee or 'unassigned'}{', due ' + i.due_date.isoformat() if i.due_date else ''})"
        for i in items
    ) or "- none"
    return (
        f"{context(transcript)}\n\nWrite the detailed summary of the meeting in Markdown: one '### ' section "
        "per topic below, in order, each a few bullet points naming who said what; then '### Decisions' "
        "(omit it when nothing was decided) and '### Action items' (one '- [ ] ' line per task below). "
        "Only Markdown, no preamble.\n\n"
        f"Topics:\n{titles}\n\nAction items:\n{tasks}\n\n{source}"
    )
