"""Enrichment's events: a request to enrich a meeting (``enrichment.requests``, from the API) and what
enrichment derived from a meeting's transcript (``insights``, read by the store writer and the live hub).

One enrichment of one meeting is one ``meeting.insights`` event, its whole result, preceded by the
``summary.chunk`` events of its detailed summary as the backend wrote it (a page shows the summary growing).
Ids derive from what was enriched, so enriching the same transcript again with the same backend writes the
same ids: the store keeps one copy, the live page replaces what it shows.

``run`` names the enrichment run: the transcript's run and the backend (``whisper:tiny.en/local``), so
another backend's result lies beside the first one instead of replacing it. ``revision`` orders the
results of one run: twice the transcript revision enriched (its placed dialogues), plus one for the
meeting's final result, so a final result wins over a rolling one of the same transcript.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from palaver.events.base import EventV

# ended: the meeting's final result once it is complete; requested: a result now; autocorrect: correct the
# form of one dialogue's text (``dialogue_id``) or of every dialogue, as machine edits.
RequestReason = Literal["ended", "requested", "autocorrect"]
# rolling: refreshed during the meeting every few final dialogues; ended: the meeting was ended; idle: no
# audio for PALAVER_MEETING_IDLE_S (an abrupt end); requested: POST /v1/meetings/{m}/enrichment.
Trigger = Literal["rolling", "ended", "idle", "requested"]


class EnrichmentRequestedV1(EventV):
    """Enrich this meeting now (``requested``) or as a whole once its transcript is complete (``ended``), or
    auto-correct its text (``autocorrect``)."""

    event: Literal["enrichment.requested"] = "enrichment.requested"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("enrichment.requested", meeting_id, reason, requested_at_ms)
    meeting_id: str
    reason: RequestReason
    backend: str | None = None  # None: the configured PALAVER_ENRICHMENT_BACKEND
    dialogue_id: str | None = None  # autocorrect: only this dialogue (None: all)
    # The transcript run to enrich (None: the meeting's live run); ``palaver replay --from dialogues`` names
    # one, a replay's run included. Events written before this field existed decode with None.
    run: str | None = None
    requested_by: str  # user id
    requested_at_ms: int


class SummaryChunkV1(EventV):
    """A piece of the detailed summary of enrichment ``enrichment_id``, in order (``seq`` from 0). ``reset``:
    the chunks before this one are void (the backend failed mid-summary and its fallback starts over)."""

    event: Literal["summary.chunk"] = "summary.chunk"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("summary.chunk", enrichment_id, seq)
    enrichment_id: str
    meeting_id: str
    run: str
    seq: int
    text: str
    reset: bool = False


class InsightActionItem(BaseModel):
    """One task as enrichment found it; human edits are separate events overlaid on read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_item_id: str  # ids.action_item_id(meeting_id, run, first source dialogue, ordinal): stable across revisions
    description: str
    assignee: str = ""  # a participant's name, "" when the transcript does not say who
    assignee_id: str = ""  # that participant's user id, when known
    start_date: str | None = None  # ISO date
    due_date: str | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    status: Literal["pending"] = "pending"
    dialogue_ids: tuple[str, ...] = ()


class MeetingInsightsV1(EventV):
    """The whole result of one enrichment of a meeting: summary, action items, keywords, mood, agenda,
    metrics (the shapes of ``palaver enrich``'s output), and how it came about."""

    event: Literal["meeting.insights"] = "meeting.insights"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("meeting.insights", enrichment_id)
    enrichment_id: str  # ids.enrichment_id(meeting_id, run, revision)
    meeting_id: str
    run: str  # "<transcript run>/<backend>"
    transcript_run: str
    backend: str  # the backend asked for; ``fallback`` says when another one produced the result
    trigger: Trigger
    final: bool  # the meeting's result (ended, idle, requested), not a rolling one
    transcript_revision: int  # placed dialogues enriched
    revision: int  # 2 * transcript_revision + final
    summary_brief: str  # Markdown
    summary_detailed: str
    action_items: tuple[InsightActionItem, ...]
    keywords: tuple[str, ...]
    mood: dict[str, Any]
    agenda: tuple[dict[str, Any], ...]
    metrics: dict[str, Any]
    fallback: dict[str, Any] | None = None  # {"backend": the one that failed, "reason": ...} when local stood in
    produced_at_ms: int
