"""What a remote backend asks a language model to auto-correct dialogues, and how its answer is read. Pure
functions, no I/O.

Each dialogue goes as one JSON line ``{"id": ..., "speaker": ..., "text": ...}``; the lines are packed in
batches of at most ``max_chars`` characters (PALAVER_ENRICHMENT_MAX_CHARS) and ``MAX_BATCH`` dialogues. The
answer is one JSON object with one corrected text per dialogue id of the batch (a strict schema: every id
required, no other key). The prompt gives the meeting's vocabulary: its title, agenda, participants and the
spellings the local auto-correct enforces too (``known_terms``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from enrichment.answers import InvalidOutput, unfenced
from enrichment.autocorrect import known_terms
from enrichment.model import Dialogue, MeetingTranscript

SCHEMA_NAME = "dialogue_corrections"
# Every id is a property of the answer's schema: a batch stays far below structured outputs' limits on a
# schema's size, and one bad answer costs few dialogues.
MAX_BATCH = 50

SYSTEM = (
    "You correct the transcripts of spoken meetings, made by speech recognition. Fix grammar, punctuation, "
    "capitalization and the spelling of names and terms. Keep the speaker's words and meaning: never "
    "rephrase, summarize, translate, add or leave out content. Write in the language of each text."
)


def line(dialogue: Dialogue) -> str:
    """The dialogue as the prompt shows it: one JSON line (its id, speaker and text)."""
    return json.dumps({"id": dialogue.dialogue_id, "speaker": dialogue.speaker, "text": dialogue.text},
                      ensure_ascii=False)  # fmt: skip


def batches(dialogues: Sequence[Dialogue], max_chars: int) -> tuple[list[list[Dialogue]], list[Dialogue]]:
    """(batches, too long): consecutive dialogues in batches whose lines (newlines counted) take at most
    ``max_chars`` characters and at most ``MAX_BATCH`` dialogues, in order; a dialogue whose line alone is
    longer than ``max_chars`` goes in no batch (the second list). Every dialogue is in exactly one of them."""
    out: list[list[Dialogue]] = []
    too_long: list[Dialogue] = []
    size = 0
    for dialogue in dialogues:
        length = len(line(dialogue))
        if length > max_chars:
            too_long.append(dialogue)
        elif out and len(out[-1]) < MAX_BATCH and size + 1 + length <= max_chars:
            out[-1].append(dialogue)
            size += 1 + length
        else:
            out.append([dialogue])
            size = length
    return out, too_long


def vocabulary(transcript: MeetingTranscript) -> str:
    """What the prompt says about the meeting: title, participants, agenda, and the spellings to keep."""
    people = ", ".join(transcript.people()) or "(none named)"
    terms = known_terms(transcript.people(), transcript.title, transcript.agenda)
    lines = [f"Meeting title: {transcript.title}" if transcript.title else "", f"Participants: {people}."]
    if transcript.agenda:
        lines.append("Planned agenda: " + "; ".join(transcript.agenda) + ".")
    if terms:
        lines.append("Names and terms, spelled as they must be written: " + ", ".join(terms) + ".")
    return "\n".join(x for x in lines if x)


def correction_prompt(transcript: MeetingTranscript, batch: Sequence[Dialogue]) -> str:
    return (
        f"{vocabulary(transcript)}\n\n"
        "Correct each dialogue below: grammar, punctuation, capitalization, and the spelling of the names "
        "and terms above where speech recognition misspelled them. Keep every word that is right and keep "
        "the meaning; do not rephrase, shorten or add. Leave a text as it is when it needs no fix. Answer "
        "with one JSON object mapping each dialogue's id to its corrected text.\n\n"
        "Dialogues, one JSON object per line:\n" + "\n".join(line(d) for d in batch)
    )


def correction_schema(dialogue_ids: Sequence[str]) -> dict[str, Any]:
    """The answer's JSON schema: one string per dialogue id, each required, no other key."""
    return {"type": "object", "additionalProperties": False, "required": list(dialogue_ids),
            "properties": {i: {"type": "string"} for i in dialogue_ids}}  # fmt: skip


def parse_corrections(content: str, dialogue_ids: Sequence[str]) -> dict[str, str]:
    """The answer as dialogue id -> corrected text, for exactly ``dialogue_ids``. Raises InvalidOutput for
    an answer that is not JSON, not an object, lacks an id, names another one or gives a text that is not a
    string. A Markdown code fence around the JSON is tolerated."""
    try:
        data = json.loads(unfenced(content))
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidOutput("not the schema: the answer is not an object")
    missing = [i for i in dialogue_ids if i not in data]
    unknown = [k for k in data if k not in set(dialogue_ids)]
    if missing or unknown:
        raise InvalidOutput(f"not the schema: {len(missing)} dialogue ids missing, {len(unknown)} unknown")
    if not all(isinstance(data[i], str) for i in dialogue_ids):
        raise InvalidOutput("not the schema: a corrected text is not a string")
    return {i: data[i] for i in dialogue_ids}
