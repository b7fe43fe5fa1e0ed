"""Human edits: each request becomes an event on the ``edits`` topic (the log is the system of record);
the store writer applies it, so the response is 202 with the edit's id. An ``Idempotency-Key`` header
makes a retried request the same edit."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Request
from pydantic import BaseModel, Field

from api import queries
from palaver import ids
from palaver.events import ActionItemEditedV1, DialogueEditedV1, TranscriptEditedV1, encode
from palaver.events.base import EventV
from palaver.events.edits_v1 import EditAction
from palaver.store import Store

router = APIRouter(tags=["edits"])

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
IdempotencyKey = Annotated[str | None, Header(description="Retries with the same key are one edit")]


class TextEdit(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    editor: str = Field(min_length=1, max_length=128, description="Who edits (user id)")


class Editor(BaseModel):
    editor: str = Field(min_length=1, max_length=128)


class ActionItemEdit(BaseModel):
    editor: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=10_000)
    assigned_to: str | None = Field(default=None, max_length=128)
    status: Literal["open", "in_progress", "done", "cancelled"] | None = None
    priority: Literal["low", "medium", "high"] | None = None
    start_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    due_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class EditAccepted(BaseModel):
    edit_id: str
    status: Literal["accepted"] = "accepted"


async def _publish(request: Request, event: EventV, meeting_id: str) -> dict[str, Any]:
    await request.app.state.producer.send_and_wait(
        request.app.state.edits_topic, encode(event), key=meeting_id.encode()
    )
    return {"edit_id": event.edit_id, "status": "accepted"}  # type: ignore[attr-defined]


def _edit_ids(meeting_id: str, target: str, key: str | None) -> tuple[str, str, int]:
    edit = ids.edit_id(meeting_id, target, key or uuid.uuid4().hex)
    return edit, ids.event_id("edit", edit), int(time.time() * 1000)


async def _require_dialogue(request: Request, meeting_id: str, dialogue_id: str) -> None:
    store: Store = request.app.state.store
    if not await queries.exists(store, "dialogues", meeting_id, dialogue_id):
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no dialogue {dialogue_id}")


async def _dialogue_edit(request: Request, meeting_id: str, dialogue_id: str, action: EditAction, editor: str,
                         text: str | None, key: str | None) -> dict[str, Any]:  # fmt: skip
    await _require_dialogue(request, meeting_id, dialogue_id)
    edit, event_id, now = _edit_ids(meeting_id, f"dialogue/{dialogue_id}/{action}", key)
    event = DialogueEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, dialogue_id=dialogue_id,
                             action=action, text=text, editor=editor, edited_at_ms=now)  # fmt: skip
    return await _publish(request, event, meeting_id)


@router.put("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}", status_code=202, response_model=EditAccepted)
async def edit_dialogue(request: Request, meeting_id: Id, dialogue_id: Id, body: TextEdit,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Replace a dialogue's text. The machine's text is kept; re-processing never overwrites the edit."""
    return await _dialogue_edit(request, meeting_id, dialogue_id, "edit", body.editor, body.text, idempotency_key)


@router.delete("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}", status_code=202, response_model=EditAccepted)
async def delete_dialogue(request: Request, meeting_id: Id, dialogue_id: Id, editor: str,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Hide a dialogue from the transcript (reversible with reset)."""
    return await _dialogue_edit(request, meeting_id, dialogue_id, "delete", editor, None, idempotency_key)


@router.post("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/reset", status_code=202, response_model=EditAccepted)
async def reset_dialogue(request: Request, meeting_id: Id, dialogue_id: Id, body: Editor,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Back to the machine's text."""
    return await _dialogue_edit(request, meeting_id, dialogue_id, "reset", body.editor, None, idempotency_key)


@router.get("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/history")
async def dialogue_history(request: Request, meeting_id: Id, dialogue_id: Id) -> dict[str, Any]:
    """Every human edit of the dialogue, oldest first."""
    await _require_dialogue(request, meeting_id, dialogue_id)
    edits = await queries.edit_history(request.app.state.store, meeting_id, "dialogue", dialogue_id)
    return {"meeting_id": meeting_id, "dialogue_id": dialogue_id, "edits": edits}


async def _transcript_edit(request: Request, meeting_id: str, action: EditAction, editor: str, text: str | None,
                           key: str | None) -> dict[str, Any]:  # fmt: skip
    if await queries.latest_run(request.app.state.store, meeting_id) is None:
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no transcript")
    edit, event_id, now = _edit_ids(meeting_id, f"transcript/{action}", key)
    event = TranscriptEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, action=action, text=text,
                               editor=editor, edited_at_ms=now)  # fmt: skip
    return await _publish(request, event, meeting_id)


@router.put("/v1/meetings/{meeting_id}/transcript", status_code=202, response_model=EditAccepted)
async def edit_transcript(request: Request, meeting_id: Id, body: TextEdit,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Replace the processed transcript with a human's text (the raw transcript stays the machine's)."""
    return await _transcript_edit(request, meeting_id, "edit", body.editor, body.text, idempotency_key)


@router.delete("/v1/meetings/{meeting_id}/transcript", status_code=202, response_model=EditAccepted)
async def delete_transcript(request: Request, meeting_id: Id, editor: str,
                            idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Mark the transcript deleted (reversible with reset; the log keeps everything)."""
    return await _transcript_edit(request, meeting_id, "delete", editor, None, idempotency_key)


@router.post("/v1/meetings/{meeting_id}/transcript/reset", status_code=202, response_model=EditAccepted)
async def reset_transcript(request: Request, meeting_id: Id, body: Editor,
                           idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    return await _transcript_edit(request, meeting_id, "reset", body.editor, None, idempotency_key)


@router.patch("/v1/meetings/{meeting_id}/action-items/{action_item_id}", status_code=202,
              response_model=EditAccepted)  # fmt: skip
async def edit_action_item(request: Request, meeting_id: Id, action_item_id: Id, body: ActionItemEdit,
                           idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Change an action item's fields (only those given)."""
    if not await queries.exists(request.app.state.store, "action_items", meeting_id, action_item_id):
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no action item {action_item_id}")
    fields = body.model_dump(exclude={"editor"}, exclude_none=True)
    if not fields:
        raise HTTPException(status_code=422, detail="name at least one field to change")
    edit, event_id, now = _edit_ids(meeting_id, f"action_item/{action_item_id}", idempotency_key)
    event = ActionItemEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, action_item_id=action_item_id,
                               action="edit", editor=body.editor, edited_at_ms=now, **fields)  # fmt: skip
    return await _publish(request, event, meeting_id)
