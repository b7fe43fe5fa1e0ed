"""Auto-correct of a meeting's text on request: the API asks enrichment (an ``autocorrect`` request on
``enrichment.requests``), which corrects the form of each dialogue no human has edited and writes the
corrections as machine edits (docs/enrichment.md, "Auto-correct"): the raw text stays, a human edit wins.
The body may name the backend (``{"backend": "openai"}``; default PALAVER_ENRICHMENT_BACKEND): ``local``
applies rules, a remote one asks its language model and falls back to the rules where it fails or changes
too many words."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from api import fields, queries
from api.access import WRITE_NOTES, CanWrite
from api.enrichment_requests import request_enrichment
from api.identity import SignedIn, now_ms
from api.insights import EnrichmentAsk
from api.responses import declared

router = APIRouter(tags=["enrichment"])
Id = Annotated[str, Path(pattern=fields.ID_PART)]
WITH_BODY = declared(400, 401, 403, 404, notes=WRITE_NOTES)
Ask = Annotated[EnrichmentAsk | None, Body(description="Which backend corrects (an unknown one is 422)")]


class CorrectionAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    meeting_id: str
    dialogue_id: str | None  # None: every dialogue of the meeting
    backend: str = Field(description="The backend that will correct it")


@router.post("/v1/meetings/{meeting_id}/autocorrect", status_code=202, response_model=CorrectionAccepted,
             responses=WITH_BODY)  # fmt: skip
async def autocorrect_meeting(request: Request, caller: SignedIn, view: CanWrite,
                              body: Ask = None) -> dict[str, Any]:  # fmt: skip
    """Auto-correct every placed dialogue of the meeting that no human has edited, with the backend named
    (default: PALAVER_ENRICHMENT_BACKEND). ``local``: names and vocabulary spelled as known, stumbles and
    punctuation fixed, the words kept. ``openai`` or ``watsonx``: their language model fixes grammar and
    punctuation given the participants' names, title and agenda; a dialogue whose correction changes more
    than PALAVER_ENRICHMENT_AUTOCORRECT_MAX_CHANGE of its words, or that the model fails on, gets the local
    correction instead. Done in the background: the corrections appear as edits by ``palaver:autocorrect``
    in each dialogue's history; a human edit, before or after, always wins."""
    return await _request(request, caller.user_id, view.meeting.meeting_id, None, body)


@router.post("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/autocorrect", status_code=202,
             response_model=CorrectionAccepted, responses=WITH_BODY)  # fmt: skip
async def autocorrect_dialogue(request: Request, caller: SignedIn, view: CanWrite, dialogue_id: Id,
                               body: Ask = None) -> dict[str, Any]:  # fmt: skip
    """Auto-correct one dialogue (as ``POST .../autocorrect`` does for all, with the backend named). 404
    when the meeting has no such dialogue."""
    meeting_id = view.meeting.meeting_id
    if not await queries.exists(request.app.state.store, "dialogues", meeting_id, dialogue_id):
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no dialogue {dialogue_id}")
    return await _request(request, caller.user_id, meeting_id, dialogue_id, body)


async def _request(request: Request, user_id: str, meeting_id: str, dialogue_id: str | None,
                   body: EnrichmentAsk | None) -> dict[str, Any]:  # fmt: skip
    backend = body.backend if body is not None else None
    event = await request_enrichment(request, meeting_id, "autocorrect", user_id, now_ms(), backend,
                                     dialogue_id=dialogue_id)  # fmt: skip
    return {"request_id": event.event_id, "meeting_id": meeting_id, "dialogue_id": dialogue_id,
            "backend": backend or request.app.state.settings.enrichment_backend}  # fmt: skip
