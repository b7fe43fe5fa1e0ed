"""The ``local`` backend: offline and deterministic. Rules and date arithmetic for tasks, TextRank for the
summary, RAKE-style phrases for keywords, VADER's packaged lexicon for mood, TextTiling for the agenda,
timing arithmetic for metrics. Nothing is downloaded and no clock is read: the same transcript always
gives the same result."""

from __future__ import annotations

from enrichment.agenda import agenda_topics
from enrichment.backend import SummaryChunkCallback
from enrichment.chunks import markdown_sections
from enrichment.keywords import keywords
from enrichment.metrics import meeting_metrics
from enrichment.model import Enrichment, MeetingTranscript
from enrichment.mood import meeting_mood
from enrichment.summary import summarize
from enrichment.tasks import extract_action_items


class LocalBackend:
    name = "local"

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: SummaryChunkCallback | None = None) -> Enrichment:
        """As the interface says; the detailed summary goes to ``on_summary_chunk`` one section at a time."""
        dialogues = sorted(transcript.dialogues, key=lambda d: (d.start_ms, d.end_ms))
        ordered = transcript.model_copy(update={"dialogues": tuple(dialogues)})
        people = ordered.people()
        items = extract_action_items(ordered)
        topics = agenda_topics(dialogues, ordered.agenda, people)
        summary = summarize(dialogues, topics, items)
        if on_summary_chunk is not None:
            for section in markdown_sections(summary.detailed):
                on_summary_chunk(section)
        return Enrichment(
            backend=self.name,
            summary=summary,
            action_items=tuple(items),
            keywords=tuple(keywords(dialogues, people)),
            mood=meeting_mood(dialogues),
            agenda=tuple(topics),
            metrics=meeting_metrics(dialogues),
        )

