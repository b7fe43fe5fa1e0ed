"""A meeting's runs, and two of them side by side: ``GET /v1/meetings/{meeting_id}/runs`` and
``GET /v1/meetings/{meeting_id}/runs/compare?a=RUN&b=RUN``.

A run is one machine pass over the meeting's audio: the live one (``engine:model``) and each replay
(``palaver replay``: ``engine:model~...``, see ``palaver.runs``). The comparison scores run B's final
dialogues against run A's, per speaker (``palaver.run_compare``). What the store keeps of a run does not
tell its latency (it keeps media times and when rows were stored, not when the audio arrived); its
``pace`` (media time over the time its utterances took to reach the store) is given instead."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api.access import NOT_FOUND, READ_NOTES, CanRead
from api.responses import declared
from palaver.run_compare import compare_runs
from palaver.store import Store
from palaver.store.runs import RunSummary, final_turns, meeting_runs

router = APIRouter(tags=["meetings"])

RunA = Annotated[str | None, Query(max_length=200, description="The reference run; default the first live run")]
RunB = Annotated[str | None, Query(max_length=200, description="The run scored against A; default the newest "
                                   "other run (A itself when the meeting has one)")]  # fmt: skip
RUN_NOT_FOUND = declared(401, 404, notes={404: f"{READ_NOTES[404]}; or the meeting has no such run"})


class RunOut(BaseModel):
    run: str = Field(description="`engine:model` for the live pass, `engine:model~...` for a replay")
    replay: bool = Field(description="Made by `palaver replay`")
    engine: str
    model: str
    final_dialogues: int
    live_dialogues: int
    utterances: int
    words: int
    speakers: int
    media_start_ms: int | None = Field(description="Its first utterance's start on the media timeline")
    media_end_ms: int | None
    first_stored_ms: int | None = Field(description="When its first utterance reached the store (wall clock)")
    last_stored_ms: int | None
    pace: float | None = Field(
        description="Media time over the time its utterances took to reach the store: about the speaking "
        "pace for a live run, the replay's speed (x real time) for a replay"
    )


class MeetingRuns(BaseModel):
    meeting_id: str
    runs: list[RunOut] = Field(description="Live runs first, each group in the order first stored")


class SpeakerScoreOut(BaseModel):
    speaker_id: str
    words_a: int
    words_b: int
    wer: float = Field(description="Word error rate of B against A")
    substitutions: int
    deletions: int = Field(description="A's words B lacks")
    insertions: int = Field(description="Words B adds")


class DifferenceOut(BaseModel):
    speaker_id: str
    at_ms: int = Field(description="Media time of the dialogue holding it")
    a: str = Field(description="A's words here (lower case, no punctuation; empty: B adds words)")
    b: str = Field(description="B's words instead (empty: B lacks A's words)")
    before: str = Field(description="Up to three equal words before")
    after: str = Field(description="Up to three equal words after")


class RunComparison(BaseModel):
    meeting_id: str
    a: RunOut
    b: RunOut
    words_a: int
    words_b: int
    wer: float = Field(description="Word error rate of B against A over the meeting (per speaker, summed)")
    speakers: list[SpeakerScoreOut]
    differences: list[DifferenceOut] = Field(description="Where B's words differ from A's, in media order")


def _run_out(summary: RunSummary) -> dict[str, Any]:
    return {**asdict(summary), "replay": summary.replay, "pace": summary.pace}


@router.get("/v1/meetings/{meeting_id}/runs", response_model=MeetingRuns, responses=NOT_FOUND)
async def list_runs(request: Request, view: CanRead) -> dict[str, Any]:
    """The meeting's runs (each machine pass over its audio: the live one and each replay) and what each
    holds. A meeting nobody has spoken in yet has none."""
    store: Store = request.app.state.store
    runs = await meeting_runs(store, view.meeting.meeting_id)
    return {"meeting_id": view.meeting.meeting_id, "runs": [_run_out(r) for r in runs]}


@router.get("/v1/meetings/{meeting_id}/runs/compare", response_model=RunComparison, responses=RUN_NOT_FOUND)
async def compare(
    request: Request,
    view: CanRead,
    a: RunA = None,
    b: RunB = None,
) -> dict[str, Any]:
    """Run B's final dialogues scored against run A's: the word error rate per speaker and over the meeting,
    and the words that differ. Human edits are left out (they are no run's). Latency is not in the store
    (media times and store times only): each run's ``pace`` is."""
    meeting_id = view.meeting.meeting_id
    store: Store = request.app.state.store
    runs = {r.run: r for r in await meeting_runs(store, meeting_id)}
    order = list(runs)
    a = a or (order[0] if order else None)
    b = b or next((r for r in reversed(order) if r != a), a)
    for run in (a, b):
        if run is None or run not in runs:
            raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no run {run!r}" if run
                                else f"meeting {meeting_id} has no runs yet")  # fmt: skip
    assert a is not None and b is not None
    a_turns, b_turns = await final_turns(store, meeting_id, a), await final_turns(store, meeting_id, b)
    result = await asyncio.to_thread(compare_runs, a, a_turns, b, b_turns)  # quadratic in a speaker's words
    return {
        "meeting_id": meeting_id, "a": _run_out(runs[a]), "b": _run_out(runs[b]), "words_a": result.words_a,
        "words_b": result.words_b, "wer": result.wer, "speakers": [asdict(s) for s in result.speakers],
        "differences": [asdict(d) for d in result.differences],
    }  # fmt: skip
