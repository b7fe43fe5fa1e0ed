"""What enrichment made of a meeting, over REST: its summary, its whole result (keywords, mood, agenda,
metrics), its action items, the enrichment runs it has, and asking for an enrichment now.

Every read takes ``?run=`` (an enrichment run, ``<transcript run>/<backend>``, as ``GET .../insights/runs``
lists them); without it, the default run of ``api.insight_queries``. A meeting without a result yet (or
without the run asked for) answers 404 with a detail that says so, as ``GET .../transcript`` does before the
first final dialogue; the action items and the runs answer an empty list instead.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import insight_queries
from api.access import NOT_FOUND, WRITE_NOTES, CanRead, CanWrite
from api.enrichment_requests import request_enrichment
from api.idempotency import KEY_MAX_LENGTH, KEY_REUSED, KeyedWrites, earlier_write, scope_of
from api.identity import SignedIn
from api.responses import declared
from palaver.enrichment_backends import BACKEND_NAMES, unknown_backend
from palaver.events.edits_v1 import TaskPriority, TaskStatus
from palaver.store import Store

router = APIRouter(tags=["insights"])

RunQuery = Annotated[str | None, Query(
    max_length=300, description="Which enrichment run (`<transcript run>/<backend>`, from `GET .../insights/runs`); "
    "default: the newest result of a live transcript run",
)]  # fmt: skip
NO_RESULT = declared(401, 404, notes={404: "No such meeting for this caller, or no result (of that run) yet"})


class Fallback(BaseModel):
    """The backend asked for failed and the local one stood in."""

    model_config = ConfigDict(extra="allow")

    from_: str = Field(alias="from", description="The backend that failed")
    reason: str


class ResultHead(BaseModel):
    """Which enrichment a result is and how it came about."""

    meeting_id: str
    enrichment_id: str
    run: str = Field(description="The enrichment run: `<transcript run>/<backend>`")
    transcript_run: str
    backend: str = Field(description="The backend asked for (`fallback` says when another one stood in)")
    trigger: Literal["rolling", "ended", "idle", "requested"] = Field(
        description="rolling: refreshed during the meeting; ended: the meeting was ended; idle: no audio for "
        "PALAVER_MEETING_IDLE_S; requested: POST .../enrichment")
    final: bool = Field(description="The meeting's result (not a rolling one)")
    revision: int = Field(description="Orders one run's results: 2 × transcript_revision + final")
    transcript_revision: int = Field(description="Placed dialogues enriched")
    fallback: Fallback | None
    produced_at_ms: int


class SummaryOut(ResultHead):
    brief: str = Field(description="Markdown: a few bullet points")
    detailed: str = Field(description="Markdown: a section per topic of the meeting")


class MoodScore(BaseModel):
    label: Literal["positive", "neutral", "negative"]
    score: float = Field(description="From -1 to 1")


class Mood(BaseModel):
    model_config = ConfigDict(extra="allow")

    overall: MoodScore
    speakers: dict[str, MoodScore] = Field(description="By speaker name")


class AgendaTopic(BaseModel):
    """A stretch of the meeting about one thing, on the meeting's media timeline."""

    model_config = ConfigDict(extra="allow")

    title: str
    start_ms: int
    end_ms: int
    agenda_item: str | None = Field(description="The meeting's planned agenda item it matched, if any")
    dialogue_ids: list[str]


class Summary(BaseModel):
    brief: str
    detailed: str


class InsightsOut(ResultHead):
    """The whole newest result of an enrichment run."""

    summary: Summary
    action_item_count: int = Field(description="The items GET .../action-items lists (human deletions left out)")
    keywords: list[str]
    mood: Mood
    agenda: list[AgendaTopic]
    metrics: dict[str, Any] = Field(
        description="duration_ms, speakers (by name: talk_ms, share, words, words_per_minute, turns, questions, "
        "interruptions, interrupted), words_per_minute, overlap_ms, interruptions, questions, longest_monologue, "
        "silence_ms, longest_silence_ms")


class InsightRunOut(BaseModel):
    run: str
    transcript_run: str
    backend: str
    trigger: str
    final: bool
    revision: int
    produced_at_ms: int
    live: bool = Field(description="Its transcript run is a live one (not a replay's)")
    default: bool = Field(description="The run the routes show without ?run=")


class InsightRuns(BaseModel):
    meeting_id: str
    runs: list[InsightRunOut]


class ActionItemOut(BaseModel):
    action_item_id: str = Field(description="Stable across the run's revisions: edits made to it stay")
    run: str
    description: str
    assigned_to: str = Field(description="A participant's name, or empty")
    assignee_id: str = Field(description="That participant's user id, when known")
    status: TaskStatus = Field(description="pending (not started, as enrichment makes every item), in_progress, done or cancelled")
    priority: TaskPriority
    start_date: str | None
    due_date: str | None
    source_dialogue_id: str
    dialogue_ids: list[str] = Field(description="The dialogues the task was said in")
    revision: int
    edited: bool


class EnrichmentAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str | None = Field(default=None, json_schema_extra={"enum": [*BACKEND_NAMES, None]},
                                description="Default: PALAVER_ENRICHMENT_BACKEND")  # fmt: skip

    @field_validator("backend")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        refused = None if name is None else unknown_backend(name)
        if refused is not None:
            raise ValueError(refused)
        return name


class EnrichmentAccepted(BaseModel):
    request_id: str = Field(description="The request's event id (the same for a retry with its Idempotency-Key)")
    meeting_id: str
    backend: str = Field(description="The backend that will enrich it")
    requested_at_ms: int
    status: Literal["accepted"] = "accepted"


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _no_result(meeting_id: str, run: str | None, what: str) -> HTTPException:
    of = f" of run {run}" if run else ""
    return HTTPException(status_code=404, detail=f"meeting {meeting_id} has no {what}{of} yet")


@router.get("/v1/meetings/{meeting_id}/summary", response_model=SummaryOut, responses=NO_RESULT)
async def get_summary(request: Request, view: CanRead, run: RunQuery = None) -> dict[str, Any]:
    """The meeting's newest summary (Markdown, brief and detailed) and which enrichment made it. 404 until
    enrichment has summarized the meeting: a page shows "no summary yet" and waits for the live socket's
    ``insights`` message."""
    meeting_id = view.meeting.meeting_id
    found = await insight_queries.result(_store(request), meeting_id, run)
    if found is None:
        raise _no_result(meeting_id, run, "summary")
    return {**found, **found["summary"]}


@router.get("/v1/meetings/{meeting_id}/insights", response_model=InsightsOut, responses=NO_RESULT)
async def get_insights(request: Request, view: CanRead, run: RunQuery = None) -> dict[str, Any]:
    """The whole newest result of an enrichment run: summary, keywords, mood, agenda (topics with their
    times), metrics (talk time per speaker...) and how many action items it found. 404 until there is one."""
    meeting_id = view.meeting.meeting_id
    store = _store(request)
    found = await insight_queries.result(store, meeting_id, run)
    if found is None:
        raise _no_result(meeting_id, run, "insights")
    items = await insight_queries.action_items(store, found)
    return {**found, "action_item_count": len(items)}


@router.get("/v1/meetings/{meeting_id}/insights/runs", response_model=InsightRuns, responses=NOT_FOUND)
async def get_insight_runs(request: Request, view: CanRead) -> dict[str, Any]:
    """The meeting's enrichment runs (another backend's, or a replay's, lie beside the live one), the
    default first; an empty list before the first result."""
    rows = await insight_queries.results(_store(request), view.meeting.meeting_id)
    return {"meeting_id": view.meeting.meeting_id, "runs": [{**r, "default": i == 0} for i, r in enumerate(rows)]}


@router.get("/v1/meetings/{meeting_id}/action-items", response_model=list[ActionItemOut], responses=NOT_FOUND)
async def get_action_items(request: Request, view: CanRead, run: RunQuery = None) -> list[dict[str, Any]]:
    """The action items of the newest result of an enrichment run, human edits applied (deleted ones left
    out). A task the newer result no longer lists is not listed; one it lists again keeps its edits. An
    empty list when there is no result (of that run) yet."""
    meeting_id = view.meeting.meeting_id
    store = _store(request)
    found = await insight_queries.result(store, meeting_id, run)
    return [] if found is None else await insight_queries.action_items(store, found)


IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=KEY_MAX_LENGTH,
    description="A retry with the same key within minutes is the same request; with another backend, 409",
)]  # fmt: skip


@router.post("/v1/meetings/{meeting_id}/enrichment", status_code=202, response_model=EnrichmentAccepted,
             responses=declared(400, 401, 403, 404, 409, notes={**WRITE_NOTES, 409: KEY_REUSED}))  # fmt: skip
async def ask_enrichment(request: Request, caller: SignedIn, view: CanWrite,
                         body: Annotated[EnrichmentAsk | None, Body()] = None,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Enrich the meeting now (a participant): the enrichment service makes its whole result with the backend
    named (an unknown one is 422, naming the known ones) and sends it to the live socket (``summary`` chunks,
    then ``insights``) and the store. A meeting nobody has spoken in yet is enriched after its first words.
    With an ``Idempotency-Key``, a retry within minutes answers as the first request did and asks nothing
    again; a later retry asks again under the same ``request_id``."""
    meeting_id = view.meeting.meeting_id
    backend = body.backend if body is not None else None
    effective = backend or request.app.state.settings.enrichment_backend
    if idempotency_key is None:
        return await _ask(request, meeting_id, caller.user_id, backend, effective, None)
    writes: KeyedWrites = request.app.state.idempotency
    scope = scope_of("enrichment", meeting_id, idempotency_key)
    async with writes.hold(scope):
        requested = {"backend": effective, "requested_by": caller.user_id}

        async def nothing_stored() -> None:  # requests are not kept in the store: only this process remembers
            return None

        earlier = await earlier_write(writes, scope, idempotency_key, requested, ("backend", "requested_by"),
                                      "request_id", nothing_stored)  # fmt: skip
        if earlier is not None:
            return {k: earlier[k] for k in EnrichmentAccepted.model_fields}
        accepted = await _ask(request, meeting_id, caller.user_id, backend, effective, idempotency_key)
        writes.remember(scope, {**accepted, "requested_by": caller.user_id})
        return accepted


async def _ask(request: Request, meeting_id: str, user_id: str, backend: str | None, effective: str,
               key: str | None) -> dict[str, Any]:  # fmt: skip
    event = await request_enrichment(request, meeting_id, "requested", user_id, int(time.time() * 1000), backend,
                                     idempotency_key=key)  # fmt: skip
    return {"request_id": event.event_id, "meeting_id": meeting_id, "backend": effective,
            "requested_at_ms": event.requested_at_ms, "status": "accepted"}  # fmt: skip
