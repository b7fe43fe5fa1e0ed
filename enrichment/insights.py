"""An ``Enrichment`` made into the events that carry it: ``summary.chunk`` events for the pieces of its
detailed summary, one ``meeting.insights`` event for the whole result. Pure: ids derive from the meeting,
the run and what was enriched."""

from __future__ import annotations

from enrichment.model import Enrichment
from palaver import ids
from palaver.events.insights_v1 import InsightActionItem, MeetingInsightsV1, SummaryChunkV1, Trigger


def enrichment_run(transcript_run: str, backend: str) -> str:
    """``whisper:tiny.en/local``: the transcript's run and the backend asked for."""
    return f"{transcript_run}/{backend}"


def result_revision(transcript_revision: int, final: bool) -> int:
    return 2 * transcript_revision + int(final)


def chunk_event(meeting_id: str, run: str, enrichment_id: str, seq: int, text: str, reset: bool = False) -> SummaryChunkV1:
    return SummaryChunkV1(event_id=ids.event_id("summary.chunk", enrichment_id, seq), enrichment_id=enrichment_id,
                          meeting_id=meeting_id, run=run, seq=seq, text=text, reset=reset)  # fmt: skip


def insights_event(meeting_id: str, transcript_run: str, backend: str, trigger: Trigger, transcript_revision: int,
                   result: Enrichment, user_ids: dict[str, str], produced_at_ms: int,
                   fallback: dict[str, str] | None = None) -> MeetingInsightsV1:  # fmt: skip
    """The event of one enrichment. Each action item's id comes from the dialogue it starts in and its
    place among that dialogue's items, so the next revision of the run keeps it (and its human edits)."""
    final = trigger != "rolling"
    run = enrichment_run(transcript_run, backend)
    revision = result_revision(transcript_revision, final)
    enrichment_id = ids.enrichment_id(meeting_id, run, revision)
    ordinals: dict[str, int] = {}
    items = []
    for item in result.action_items:
        first = item.dialogue_ids[0] if item.dialogue_ids else ""
        ordinal = ordinals[first] = ordinals.get(first, -1) + 1
        items.append(InsightActionItem(
            action_item_id=ids.action_item_id(meeting_id, run, first, ordinal), description=item.description,
            assignee=item.assignee, assignee_id=user_ids.get(item.assignee, ""),
            start_date=None if item.start_date is None else item.start_date.isoformat(),
            due_date=None if item.due_date is None else item.due_date.isoformat(), priority=item.priority,
            dialogue_ids=item.dialogue_ids,
        ))  # fmt: skip
    data = result.to_json()
    return MeetingInsightsV1(
        event_id=ids.event_id("meeting.insights", enrichment_id), enrichment_id=enrichment_id, meeting_id=meeting_id,
        run=run, transcript_run=transcript_run, backend=backend, trigger=trigger, final=final,
        transcript_revision=transcript_revision, revision=revision, summary_brief=result.summary.brief,
        summary_detailed=result.summary.detailed, action_items=tuple(items), keywords=tuple(result.keywords),
        mood=data["mood"], agenda=tuple(data["agenda"]), metrics=data["metrics"],
        fallback=fallback or data.get("fallback"), produced_at_ms=produced_at_ms,
    )  # fmt: skip
