"""Human edits: each request becomes an event on the ``edits`` topic (the log is the system of record);
the store writer applies it, so the response is 202 with the edit's id. An ``Idempotency-Key`` header
makes a retried request the same edit: the edit's id derives from it, the edit keeps it, and a request
reusing it answers with the earlier edit's id when it asks for the same edit and 409 when it asks for
another, without writing anything (``api.idempotency``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import fields, queries
from api.access import WRITE_NOTES, CanRead, CanWrite
from api.idempotency import KEY_MAX_LENGTH, KEY_REUSED, KeyedWrites, earlier_write, scope_of
from api.identity import SignedIn
from api.responses import declared
from palaver import ids
from palaver.events import ActionItemEditedV1, DialogueEditedV1, TranscriptEditedV1, encode
from palaver.events.edits_v1 import EditAction, TaskPriority, TaskStatus
from palaver.store import Store
from palaver.store.rows import COLUMNS, Provenance, rows_for

router = APIRouter(tags=["edits"])

Id = Annotated[str, Path(pattern=fields.ID_PART)]
# Every edit is made by the signed-in caller (the event's ``editor``), never by a name the client sends.
IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=KEY_MAX_LENGTH,
    description="A retry with the same key is the same edit; the same key for another edit is 409",
)]  # fmt: skip
EditEvent = DialogueEditedV1 | TranscriptEditedV1 | ActionItemEditedV1
# What a retry must repeat (the meeting is the key's scope; the edit id derives from these and the key).
EDIT_REQUEST_FIELDS = ("target_kind", "target_id", "action", "text", "fields", "editor")
NOTES = {**WRITE_NOTES, 404: "No such meeting for this caller, or no such target", 409: KEY_REUSED}
REMOVAL = declared(401, 403, 404, 409, notes=NOTES)  # the edits without a body (DELETE, reset)
RESPONSES = declared(400, 401, 403, 404, 409, notes=NOTES)


class TextEdit(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


ACTION_ITEM_CHANGEABLE = ("description", "assigned_to", "status", "priority", "start_date", "due_date")
ACTION_ITEM_RULES = fields.BodyRules(at_least_one_of=ACTION_ITEM_CHANGEABLE)


class ActionItemEdit(BaseModel):
    """The fields to change (at least one)."""

    model_config = ConfigDict(json_schema_extra=ACTION_ITEM_RULES.json_schema)

    description: str = fields.omittable(max_length=10_000)
    assigned_to: str = fields.omittable(max_length=128)
    status: TaskStatus = fields.omittable(description="pending (not started), in_progress, done or cancelled")
    priority: TaskPriority = fields.omittable(description="high, normal or low")
    start_date: fields.CalendarDate = fields.omittable()
    due_date: fields.CalendarDate = fields.omittable()

    @model_validator(mode="after")
    def _follows_the_rules(self) -> ActionItemEdit:
        ACTION_ITEM_RULES.check(self)
        return self


class EditOut(BaseModel):
    edit_id: str
    action: str  # edit | delete | reset
    text: str | None
    fields: dict[str, Any]  # the action item fields it set
    editor: str
    edited_at_ms: int


class DialogueHistory(BaseModel):
    meeting_id: str
    dialogue_id: str
    edits: list[EditOut]


class EditAccepted(BaseModel):
    edit_id: str
    status: Literal["accepted"] = "accepted"


def as_stored(event: EditEvent) -> dict[str, Any]:
    """The edit's ``edits`` row, by column, as the store writer writes it."""
    ((table, row),) = rows_for(event, Provenance("", 0, 0))
    return dict(zip(COLUMNS[table], row, strict=True))


async def _submit(request: Request, event: EditEvent, check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Publish the edit once ``check`` passed (it raises 404), or, when its Idempotency-Key was already
    used in the meeting, answer with the earlier edit (409 if that was another edit)."""
    key, meeting_id = event.idempotency_key, event.meeting_id
    if key is None:
        await check()
        return await _publish(request, event)
    writes: KeyedWrites = request.app.state.idempotency
    scope = scope_of("edits", meeting_id, key)
    async with writes.hold(scope):
        requested = as_stored(event)
        earlier = await earlier_write(
            writes, scope, key, requested, EDIT_REQUEST_FIELDS, "edit_id",
            lambda: queries.edit_by_key(request.app.state.store, meeting_id, key),
        )  # fmt: skip
        if earlier is not None:
            return {"edit_id": earlier["edit_id"], "status": "accepted"}
        await check()
        accepted = await _publish(request, event)
        writes.remember(scope, requested)
        return accepted


async def _publish(request: Request, event: EditEvent) -> dict[str, Any]:
    await request.app.state.producer.send_and_wait(
        request.app.state.edits_topic, encode(event), key=event.meeting_id.encode()
    )
    return {"edit_id": event.edit_id, "status": "accepted"}


def _edit_ids(meeting_id: str, target: str, key: str | None) -> tuple[str, str, int]:
    edit = ids.edit_id(meeting_id, target, key or uuid.uuid4().hex)
    return edit, ids.event_id("edit", edit), int(time.time() * 1000)


async def _require_dialogue(request: Request, meeting_id: str, dialogue_id: str) -> None:
    store: Store = request.app.state.store
    if not await queries.exists(store, "dialogues", meeting_id, dialogue_id):
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no dialogue {dialogue_id}")


async def _dialogue_edit(request: Request, meeting_id: str, dialogue_id: str, action: EditAction, editor: str,
                         text: str | None, key: str | None) -> dict[str, Any]:  # fmt: skip
    edit, event_id, now = _edit_ids(meeting_id, f"dialogue/{dialogue_id}/{action}", key)
    event = DialogueEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, dialogue_id=dialogue_id,
                             action=action, text=text, editor=editor, edited_at_ms=now,
                             idempotency_key=key)  # fmt: skip
    return await _submit(request, event, lambda: _require_dialogue(request, meeting_id, dialogue_id))


@router.put("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}", status_code=202, response_model=EditAccepted,
            responses=RESPONSES)  # fmt: skip
async def edit_dialogue(request: Request, caller: SignedIn, view: CanWrite, dialogue_id: Id, body: TextEdit,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Replace a dialogue's text. The machine's text is kept; re-processing never overwrites the edit."""
    return await _dialogue_edit(request, view.meeting.meeting_id, dialogue_id, "edit", caller.user_id, body.text,
                                idempotency_key)  # fmt: skip


@router.delete("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}",
               status_code=202, response_model=EditAccepted, responses=REMOVAL)  # fmt: skip
async def delete_dialogue(request: Request, caller: SignedIn, view: CanWrite, dialogue_id: Id,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Hide a dialogue from the transcript (reversible with reset)."""
    return await _dialogue_edit(request, view.meeting.meeting_id, dialogue_id, "delete", caller.user_id, None,
                                idempotency_key)  # fmt: skip


@router.post("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/reset",
             status_code=202, response_model=EditAccepted, responses=RESPONSES)  # fmt: skip
async def reset_dialogue(request: Request, caller: SignedIn, view: CanWrite, dialogue_id: Id,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Back to the machine's text."""
    return await _dialogue_edit(request, view.meeting.meeting_id, dialogue_id, "reset", caller.user_id, None,
                                idempotency_key)  # fmt: skip


@router.get("/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/history", response_model=DialogueHistory,
            responses=declared(401, 404, notes={404: "No such meeting for this caller, or no such dialogue"}))  # fmt: skip
async def dialogue_history(request: Request, view: CanRead, dialogue_id: Id) -> dict[str, Any]:
    """Every human edit of the dialogue, oldest first."""
    meeting_id = view.meeting.meeting_id
    await _require_dialogue(request, meeting_id, dialogue_id)
    edits = await queries.edit_history(request.app.state.store, meeting_id, "dialogue", dialogue_id)
    return {"meeting_id": meeting_id, "dialogue_id": dialogue_id, "edits": edits}


async def _transcript_edit(request: Request, meeting_id: str, action: EditAction, editor: str, text: str | None,
                           key: str | None) -> dict[str, Any]:  # fmt: skip
    async def check() -> None:
        if await queries.latest_run(request.app.state.store, meeting_id) is None:
            raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no transcript")

    edit, event_id, now = _edit_ids(meeting_id, f"transcript/{action}", key)
    event = TranscriptEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, action=action, text=text,
                               editor=editor, edited_at_ms=now, idempotency_key=key)  # fmt: skip
    return await _submit(request, event, check)


@router.put("/v1/meetings/{meeting_id}/transcript", status_code=202, response_model=EditAccepted,
            responses=RESPONSES)  # fmt: skip
async def edit_transcript(request: Request, caller: SignedIn, view: CanWrite, body: TextEdit,
                          idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Replace the processed transcript with a human's text (the raw transcript stays the machine's)."""
    return await _transcript_edit(request, view.meeting.meeting_id, "edit", caller.user_id, body.text,
                                  idempotency_key)  # fmt: skip


@router.delete("/v1/meetings/{meeting_id}/transcript", status_code=202, response_model=EditAccepted,
               responses=REMOVAL)  # fmt: skip
async def delete_transcript(request: Request, caller: SignedIn, view: CanWrite,
                            idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Mark the transcript deleted (reversible with reset; the log keeps everything)."""
    return await _transcript_edit(request, view.meeting.meeting_id, "delete", caller.user_id, None, idempotency_key)


@router.post("/v1/meetings/{meeting_id}/transcript/reset", status_code=202, response_model=EditAccepted,
             responses=RESPONSES)  # fmt: skip
async def reset_transcript(request: Request, caller: SignedIn, view: CanWrite,
                           idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Back to the machine's transcript."""
    return await _transcript_edit(request, view.meeting.meeting_id, "reset", caller.user_id, None, idempotency_key)


@router.patch("/v1/meetings/{meeting_id}/action-items/{action_item_id}", status_code=202,
              response_model=EditAccepted, responses=RESPONSES)  # fmt: skip
async def edit_action_item(request: Request, caller: SignedIn, view: CanWrite, action_item_id: Id,
                           body: ActionItemEdit, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Change an action item's fields (only those given)."""
    meeting_id = view.meeting.meeting_id
    changes = body.model_dump(include=set(ACTION_ITEM_CHANGEABLE), exclude_unset=True)

    async def check() -> None:
        if not await queries.exists(request.app.state.store, "action_items", meeting_id, action_item_id):
            raise HTTPException(
                status_code=404, detail=f"meeting {meeting_id} has no action item {action_item_id}"
            )

    key = idempotency_key
    edit, event_id, now = _edit_ids(meeting_id, f"action_item/{action_item_id}", key)
    event = ActionItemEditedV1(event_id=event_id, edit_id=edit, meeting_id=meeting_id, action_item_id=action_item_id,
                               action="edit", editor=caller.user_id, edited_at_ms=now, idempotency_key=key,
                               **changes)  # fmt: skip
    return await _submit(request, event, check)
