"""An action item's status is one vocabulary, pending | in_progress | done | cancelled, from enrichment to
the edit route and its event; edits made with the old word for pending, ``open``, still read."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from api.edits import ActionItemEdit
from enrichment.model import ActionItem
from palaver.events import ActionItemEditedV1, decode, encode
from palaver.events.edits_v1 import TaskStatus, task_status


def _edit(status: str) -> dict[str, object]:
    return {"event": "action_item.edited", "version": 1, "event_id": "evt_1", "edit_id": "edt_1",
            "meeting_id": "m1", "action_item_id": "ai_1", "action": "edit", "status": status, "editor": "ana",
            "edited_at_ms": 1}  # fmt: skip


def test_enrichment_makes_items_in_the_edit_vocabulary() -> None:
    assert ActionItem.model_fields["status"].default in typing.get_args(TaskStatus)
    assert typing.get_args(TaskStatus) == ("pending", "in_progress", "done", "cancelled")


@pytest.mark.parametrize("status", ["pending", "in_progress", "done", "cancelled"])
def test_the_edit_route_takes_every_status(status: str) -> None:
    assert ActionItemEdit(status=status).status == status


def test_the_edit_route_refuses_the_old_word() -> None:
    with pytest.raises(ValidationError):
        ActionItemEdit(status="open")


def test_an_edit_event_with_the_old_word_decodes_as_pending() -> None:
    event = decode(encode(ActionItemEditedV1.model_validate(_edit("open"))))
    assert isinstance(event, ActionItemEditedV1) and event.status == "pending"
    with pytest.raises(ValidationError):
        ActionItemEditedV1.model_validate(_edit("started"))


def test_a_stored_status_reads_in_todays_words() -> None:
    assert [task_status(s) for s in ("open", "pending", "done", None)] == ["pending", "pending", "done", None]
