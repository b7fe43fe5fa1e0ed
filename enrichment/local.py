"""The ``local`` backend: offline and deterministic. Rules and date arithmetic for tasks, TextRank for the
summary, RAKE-style phrases for keywords, VADER's packaged lexicon for mood, TextTiling for the agenda,
timing arithmetic for metrics. Nothing is downloaded and no clock is read: the same transcript always
gives the same result."""

from __future__ import annotations

import re
from collections.abc import Callable

from enrichment.agenda import agenda_topics
from enrichment.keywords import keywords
from enrichment.metrics import meeting_metrics
from enrichment.model import Enrichment, MeetingTranscript
from enrichment.mood import meeting_mood
from enrichment.summary import summarize
from enrichment.tasks import extract_action_items


class LocalBackend:
    name = "local"

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: Callable[[str], None] | None = None) -> Enrichment:
        dialogues = sorted(transcript.dialogues, key=lambda d: (d.start_ms, d.end_ms))
        ordered = transcript.model_copy(update={"dialogues": tuple(dialogues)})
        people = ordered.people()
        items = extract_action_items(ordered)
        topics = agenda_topics(dialogues, ordered.agenda, people)
        summary = summarize(dialogues, topics, items)
        if on_summary_chunk is not None:
            for piece in summary_pieces(summary.detailed):
                on_summary_chunk(piece)
        return Enrichment(
            backend=self.name,
            summary=summary,
            action_items=tuple(items),
            keywords=tuple(keywords(dialogues, people)),
            mood=meeting_mood(dialogues),
            agenda=tuple(topics),
            metrics=meeting_metrics(dialogues),
        )


def summary_pieces(detailed: str) -> list[str]:
    """The detailed summary cut before each section heading: the pieces joined are the whole summary."""
    return [piece for piece in re.split(r"(?m)^(?=#{1,6} )", detailed) if piece]
