"""Human edits, as events on the ``edits`` topic. Machine re-processing never overwrites them: the read
model overlays the latest edit of a target on the machine's text, and keeps every edit as history.

``idempotency_key`` (optional; payloads written before it decode as None) is the API request's key: the
store keeps it with the row, so the API recognises a reused key however long ago it was used."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from palaver.events.base import EventV

EditAction = Literal["edit", "reset", "delete"]  # reset: back to the machine's text
# An action item's status, one vocabulary from enrichment (which makes every item ``pending``) to the web
# page: pending = not started.
TaskStatus = Literal["pending", "in_progress", "done", "cancelled"]
LEGACY_TASK_STATUS = {"open": "pending"}  # edits are kept forever: ones made with the old word still read


# An action item's priority, the same words enrichment uses; ``medium``, the edit route's first word for it,
# reads as ``normal``.
TaskPriority = Literal["high", "normal", "low"]
LEGACY_TASK_PRIORITY = {"medium": "normal"}


def task_priority(value: Any) -> Any:
    """A stored priority in today's vocabulary (``medium`` read as ``normal``); anything else unchanged."""
    return LEGACY_TASK_PRIORITY.get(value, value) if isinstance(value, str) else value


def task_status(value: Any) -> Any:
    """A stored action item status in today's vocabulary (``open``, the old word for ``pending``, read as
    ``pending``); anything else unchanged, for the caller's validation."""
    return LEGACY_TASK_STATUS.get(value, value) if isinstance(value, str) else value


class DialogueEditedV1(EventV):
    event: Literal["dialogue.edited"] = "dialogue.edited"
    version: Literal[1] = 1
    event_id: str
    edit_id: str
    meeting_id: str
    dialogue_id: str
    action: EditAction
    text: str | None = None  # the new text for "edit"
    editor: str
    edited_at_ms: int
    idempotency_key: str | None = None  # the request's Idempotency-Key (the edit id derives from it)


class TranscriptEditedV1(EventV):
    event: Literal["transcript.edited"] = "transcript.edited"
    version: Literal[1] = 1
    event_id: str
    edit_id: str
    meeting_id: str
    action: EditAction
    text: str | None = None
    editor: str
    edited_at_ms: int
    idempotency_key: str | None = None  # the request's Idempotency-Key (the edit id derives from it)


class ActionItemEditedV1(EventV):
    event: Literal["action_item.edited"] = "action_item.edited"
    version: Literal[1] = 1
    event_id: str
    edit_id: str
    meeting_id: str
    action_item_id: str
    action: EditAction
    description: str | None = None
    assigned_to: str | None = None
    status: TaskStatus | None = None  # an edit made before ``pending`` replaced ``open`` decodes as pending
    priority: TaskPriority | None = None  # an edit made with ``medium`` decodes as normal
    start_date: str | None = None  # ISO date
    due_date: str | None = None
    editor: str
    edited_at_ms: int
    idempotency_key: str | None = None  # the request's Idempotency-Key (the edit id derives from it)

    @field_validator("status", mode="before")
    @classmethod
    def _old_word(cls, value: Any) -> Any:
        return task_status(value)

    @field_validator("priority", mode="before")
    @classmethod
    def _old_priority(cls, value: Any) -> Any:
        return task_priority(value)
