"""A meeting's final dialogues as a document to download: Markdown, JSON, SubRip (SRT) and WebVTT (pure: no
I/O; ``api.exports`` serves them).

Subtitles: each dialogue becomes one or more cues. A cue holds at most ``CUE_LINES`` lines of at most
``CUE_WIDTH`` characters and lasts about ``CUE_MAX_MS`` at most: a longer dialogue is cut, at a sentence's end
where one falls within a cue, else between words (a word longer than a line is cut itself). The dialogue's
span is shared out by characters (speech runs at an even pace as far as a transcript can tell), each cue
ending where the next of its dialogue starts, so a dialogue's cues never overlap; cues of speakers talking
at once do, as the speech did. Cues are in order of their start, as WebVTT requires.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

CUE_WIDTH = 42  # characters per subtitle line: the common broadcast and streaming guideline
CUE_LINES = 2
CUE_MAX_MS = 7000  # about as long as a two-line subtitle should stay up
FILENAME_MAX = 100  # characters of the title kept in a download's file name

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ExportDialogue:
    dialogue_id: str
    speaker_id: str
    speaker_name: str
    start_ms: int  # on the meeting's media timeline (0 = the meeting's start)
    end_ms: int
    text: str  # the human's when edited, else the machine's
    edited: bool


@dataclass(frozen=True, slots=True)
class MeetingExport:
    """What an export holds: the meeting, its final dialogues in media order and how many dialogues were
    left out because they are still live (being transcribed)."""

    meeting_id: str
    title: str
    owner_id: str
    created_at_ms: int
    scheduled_start_ms: int | None
    ended_at_ms: int | None
    participants: tuple[Person, ...]
    run: str | None
    dialogues: tuple[ExportDialogue, ...]
    live_left_out: int = 0

    @property
    def date_ms(self) -> int:
        """When the meeting took place: its scheduled start, else when it was made."""
        return self.created_at_ms if self.scheduled_start_ms is None else self.scheduled_start_ms


@dataclass(frozen=True, slots=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) as one space, trimmed."""
    return " ".join(text.split())


def clock(ms: int) -> str:
    """Meeting-clock time: ``mm:ss``, or ``h:mm:ss`` from the first hour on (negative times as 0)."""
    seconds = max(0, ms) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(0, ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def srt_time(ms: int) -> str:
    """``HH:MM:SS,mmm`` (more hour digits past 99 hours)."""
    return _timestamp(ms, ",")


def vtt_time(ms: int) -> str:
    """``HH:MM:SS.mmm`` (more hour digits past 99 hours)."""
    return _timestamp(ms, ".")


def _pieces(word: str, width: int) -> list[str]:
    return [word[i : i + width] for i in range(0, len(word), width)]


def wrap(words: list[str], widths: tuple[int, ...]) -> list[str] | None:
    """``words`` laid out greedily on lines of ``widths`` (the first line's, then the others'); None when
    they need more lines than there are widths."""
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(line) + 1 + len(word) <= widths[len(lines)]:
            line += " " + word
            continue
        if line:
            lines.append(line)
        line = word
        if len(lines) >= len(widths) or len(word) > widths[len(lines)]:
            return None
    return [*lines, line] if line else lines


def _sentences(words: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for word in words:
        out[-1].append(word)
        if _SENTENCE_END.search(word):
            out.append([])
    return [s for s in out if s]


def split_cues(text: str, start_ms: int, end_ms: int, *, width: int = CUE_WIDTH, lines: int = CUE_LINES,
               max_ms: int = CUE_MAX_MS, first_line_reserve: int = 0) -> list[Cue]:  # fmt: skip
    """One dialogue's text as readable cues within [start_ms, end_ms] (see the module's docstring).
    ``first_line_reserve``: characters the first line of each cue leaves for a prefix (SRT's speaker name;
    at most half a line). Empty or blank text gives no cue."""
    first_width = width - min(max(0, first_line_reserve), width // 2)
    widths = (first_width, *([width] * (lines - 1)))
    words = [p for w in _one_line(text).split(" ") if w for p in _pieces(w, first_width)]
    if not words:
        return []
    total = len(" ".join(words))
    span = max(0, end_ms - start_ms)
    # A cue's share of the span counts its characters and the space after it: keep that within max_ms.
    budget = total if span <= max_ms else max(1, max_ms * total // span - 1)

    def fits(candidate: list[str], limit: int = budget) -> bool:
        return len(" ".join(candidate)) <= limit and wrap(candidate, widths) is not None

    def pack(run: list[str], limit: int) -> list[list[str]]:
        out: list[list[str]] = [[]]
        for word in run:
            if out[-1] and not fits([*out[-1], word], limit):
                out.append([])
            out[-1].append(word)
        return out

    def evenly(run: list[str]) -> list[list[str]]:
        """As few cues as it takes, of even length: the least limit that needs no more of them."""
        pieces = pack(run, budget)
        limit = min(budget, -(-len(" ".join(run)) // len(pieces)))
        while len(even := pack(run, limit)) > len(pieces):
            limit += 1
        return even

    groups: list[list[str]] = []
    current: list[str] = []
    for sentence in _sentences(words):
        if fits(current + sentence):
            current += sentence
            continue
        # Cut at the sentence's start, unless the sentence is cut between words anyway and what is
        # pending is too short to read on its own (a lone "Thanks." for half a second): it goes along.
        if current and (fits(sentence) or len(" ".join(current)) >= width // 2):
            groups.append(current)
            current = []
        *done, current = evenly(current + sentence)
        groups += done
    groups.append(current)
    cues = []
    offset = 0
    for group in groups:
        length = len(" ".join(group))
        after = min(total, offset + length + 1)  # the next cue starts after this one's trailing space
        laid_out = wrap(group, widths)
        # Every group fits its lines: fits() made it, or it is one piece, never wider than a line.
        assert laid_out is not None
        cues.append(Cue(start_ms + span * offset // total, start_ms + span * after // total, tuple(laid_out)))
        offset = after
    return cues


def vtt_escape(text: str) -> str:
    """Text as WebVTT cue text (or a voice's name) shows it: ``&``, ``<`` and ``>`` as character
    references, so no ``-->`` is left either."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def srt_escape(text: str) -> str:
    """Text fit for an SRT cue: no ``-->`` (a reader takes it for a timing line). SRT has no escapes; its
    readers' tags (``<i>``, ``{\\an8}``) would need them, so ``<`` and ``{`` stay as they are."""
    while "-->" in text:
        text = text.replace("-->", "->")
    return text


def _subtitle_cues(export: MeetingExport, reserve_name: bool) -> list[tuple[ExportDialogue, Cue]]:
    found = []
    for dialogue in export.dialogues:
        reserve = len(dialogue.speaker_name) + 2 if reserve_name else 0
        found += [(dialogue, cue) for cue in split_cues(dialogue.text, dialogue.start_ms, dialogue.end_ms,
                                                        first_line_reserve=reserve)]  # fmt: skip
    return sorted(found, key=lambda pair: pair[1].start_ms)  # stable: a dialogue's cues keep their order


def to_srt(export: MeetingExport) -> str:
    """SubRip: numbered cues, ``Name: `` before each cue's text."""
    blocks = []
    for number, (dialogue, cue) in enumerate(_subtitle_cues(export, reserve_name=True), start=1):
        lines = [srt_escape(line) for line in cue.lines]
        lines[0] = f"{srt_escape(dialogue.speaker_name)}: {lines[0]}"
        blocks.append(f"{number}\n{srt_time(cue.start_ms)} --> {srt_time(cue.end_ms)}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_vtt(export: MeetingExport) -> str:
    """WebVTT: numbered cues, each speaker's text in a ``<v Name>`` voice span."""
    blocks = ["WEBVTT\n"]
    for number, (dialogue, cue) in enumerate(_subtitle_cues(export, reserve_name=False), start=1):
        text = "\n".join(vtt_escape(line) for line in cue.lines)
        voice = vtt_escape(dialogue.speaker_name)
        blocks.append(f"{number}\n{vtt_time(cue.start_ms)} --> {vtt_time(cue.end_ms)}\n<v {voice}>{text}\n")
    return "\n".join(blocks)


# Markdown's punctuation; an ``_`` unless within a word (``usr_1``: never emphasis there, CommonMark says);
# an ``&`` that would start a character reference (``&amp;``, ``&#38;``).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>#|~]|(?<![^\W_])_|_(?![^\W_])|&(?=#?[A-Za-z0-9]+;))")


def markdown_escape(text: str) -> str:
    """``text`` on one line, its Markdown punctuation backslash-escaped, so it shows as written (no
    emphasis, links, HTML or headings of its own)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _one_line(text))


def _date(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def to_markdown(export: MeetingExport) -> str:
    """The title, the date, the participants, then one paragraph per dialogue: the speaker's name in bold,
    the meeting-clock time in parentheses, the text."""
    names = ", ".join(markdown_escape(p.name) for p in export.participants) or "none"
    parts = [f"# {markdown_escape(export.title)}", f"- Date: {_date(export.date_ms)}\n- Participants: {names}"]
    if export.live_left_out:
        count = export.live_left_out
        parts.append(f"_Not included: {count} dialogue{'s' if count != 1 else ''} still being transcribed._")
    paragraphs = [f"**{markdown_escape(d.speaker_name)}** ({clock(d.start_ms)}): {markdown_escape(d.text)}"
                  for d in export.dialogues if d.text.strip()]  # fmt: skip
    parts += paragraphs or ["_No final dialogues yet._"]
    return "\n\n".join(parts) + "\n"


def to_json(export: MeetingExport) -> dict[str, Any]:
    """The meeting's metadata and its dialogues as they are stored (text unchanged)."""
    return {
        "meeting": {
            "meeting_id": export.meeting_id, "title": export.title, "owner_id": export.owner_id,
            "created_at_ms": export.created_at_ms, "scheduled_start_ms": export.scheduled_start_ms,
            "ended_at_ms": export.ended_at_ms,
            "participants": [{"user_id": p.user_id, "name": p.name} for p in export.participants],
        },
        "run": export.run,
        "live_dialogues_left_out": export.live_left_out,
        "dialogues": [
            {"dialogue_id": d.dialogue_id, "speaker_id": d.speaker_id, "speaker_name": d.speaker_name,
             "start_ms": d.start_ms, "end_ms": d.end_ms, "text": d.text, "edited": d.edited}
            for d in export.dialogues
        ],
    }  # fmt: skip


_UNSAFE_IN_NAMES = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]+')
_NOT_PLAIN_ASCII = re.compile(r"[^A-Za-z0-9 ._()-]+")


def content_disposition(title: str, extension: str) -> str:
    """``attachment`` with a file name made from the meeting's title: ``filename`` in plain ASCII (for
    clients that know no better; accents dropped, other characters as ``_``, "meeting" if nothing is
    left) and ``filename*`` (RFC 5987/6266) in UTF-8. Neither can hold a quote, a path, or a control
    character."""
    name = _one_line(_UNSAFE_IN_NAMES.sub(" ", title))[:FILENAME_MAX].strip(" .") or "meeting"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"_+", "_", _NOT_PLAIN_ASCII.sub("_", ascii_name)).strip(" ._") or "meeting"
    return f"attachment; filename=\"{ascii_name}.{extension}\"; filename*=UTF-8''{quote(f'{name}.{extension}', safe='')}"


def participants_and_speakers(people: Iterable[Person], dialogues: Iterable[ExportDialogue]) -> tuple[Person, ...]:
    """The meeting's people, then anyone else who spoke (one who left, say), in order of first words."""
    out = {p.user_id: p for p in people}
    for d in dialogues:
        out.setdefault(d.speaker_id, Person(d.speaker_id, d.speaker_name))
    return tuple(out.values())
