"""Auto-correct of a meeting's text on request: the API asks enrichment (an ``autocorrect`` request on
``enrichment.requests``), which corrects the form of each dialogue no human has edited and writes the
corrections as machine edits (docs/enrichment.md, "Auto-correct"): the raw text stays, a human edit wins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict

from api import fields, queries
from api.access import WRITE_DENIED, CanWrite
from api.enrichment_requests import request_enrichment
from api.identity import SignedIn, now_ms

router = APIRouter(tags=["enrichment"])
Id = Annotated[str, Path(pattern=fields.ID_PART)]


class CorrectionAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    meeting_id: str
    dialogue_id: str | None  # None: every dialogue of the meeting


@router.post("/v1/meetings/{meeting_id}/autocorrect", status_code=202, response_model=CorrectionAccepted,
             responses=WRITE_DENIED)  # fmt: skip
async def autocorrect_meeting(request: Request, caller: SignedIn, view: CanWrite) -> dict[str, Any]:
    """Auto-correct every placed dialogue of the meeting that no human has edited (names and vocabulary
    spelled as known, stumbles and punctuation fixed, the words kept). Done in the background: the
    corrections appear as edits by ``palaver:autocorrect`` in each dialogue's history; a human edit, before
    or after, always wins."""
    return await _request(request, caller.user_id, view.meeting.meeting_id, None)


@router.post("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/autocorrect", status_code=202,
             response_model=CorrectionAccepted, responses=WRITE_DENIED)  # fmt: skip
async def autocorrect_dialogue(request: Request, caller: SignedIn, view: CanWrite, dialogue_id: Id) -> dict[str, Any]:
    """Auto-correct one dialogue (as ``POST .../autocorrect`` does for all). 404 when the meeting has no such
    dialogue."""
    meeting_id = view.meeting.meeting_id
    if not await queries.exists(request.app.state.store, "dialogues", meeting_id, dialogue_id):
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no dialogue {dialogue_id}")
    return await _request(request, caller.user_id, meeting_id, dialogue_id)


async def _request(request: Request, user_id: str, meeting_id: str, dialogue_id: str | None) -> dict[str, Any]:
    event = await request_enrichment(request, meeting_id, "autocorrect", user_id, now_ms(), dialogue_id=dialogue_id)
    return {"request_id": event.event_id, "meeting_id": meeting_id, "dialogue_id": dialogue_id}
