"""Idempotency keys: the comparison of a request with the earlier one of its key, the 409, the memory and
the per-key lock (``api.idempotency``), and the rows the edits and chat APIs compare."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import HTTPException

from api.chat import CHAT_REQUEST_FIELDS, ChatPost
from api.edits import EDIT_REQUEST_FIELDS, as_stored
from api.idempotency import KeyedWrites, conflict, differing, earlier_write, scope_of
from api.user_state import RecentWrites
from palaver import ids
from palaver.events import ActionItemEditedV1, DialogueEditedV1, TranscriptEditedV1
from palaver.events.edits_v1 import EditAction

# --- pure comparison -------------------------------------------------------------------------------------


def test_scopes_keep_meetings_and_kinds_apart() -> None:
    scopes = {scope_of("chat", "m1", "k"), scope_of("edits", "m1", "k"), scope_of("chat", "m2", "k"),
              scope_of("chat", "m1", "k2")}  # fmt: skip
    assert len(scopes) == 4
    assert scope_of("chat", "m1", "k") == scope_of("chat", "m1", "k")


def test_differing_names_the_fields_in_order() -> None:
    earlier = {"user_id": "usr_a", "text": "hi", "sent_at_ms": 1}
    assert differing(earlier, {"user_id": "usr_a", "text": "hi", "sent_at_ms": 2}, CHAT_REQUEST_FIELDS) == []
    assert differing(earlier, {"user_id": "usr_b", "text": "ho"}, CHAT_REQUEST_FIELDS) == ["user_id", "text"]
    assert differing(earlier, {"user_id": "usr_a", "text": "ho"}, CHAT_REQUEST_FIELDS) == ["text"]


def test_conflict_is_a_clear_409() -> None:
    error = conflict("retry-7", "msg_123", ["text"])
    assert error.status_code == 409
    assert "'retry-7'" in error.detail and "msg_123" in error.detail and "differs in text" in error.detail
    assert "new key" in error.detail


def test_a_chat_body_cannot_name_its_writer() -> None:
    body = ChatPost.model_validate({"user_id": "usr_" + "0" * 24, "text": "Hello"})
    assert body.model_dump() == {"text": "Hello"}, "the writer is the signed-in caller, never the body's"


def _dialogue_edit(key: str, action: EditAction = "edit", text: str | None = "Fixed.", editor: str = "carol",
                   now: int = 1000) -> DialogueEditedV1:  # fmt: skip
    edit = ids.edit_id("m1", f"dialogue/dlg_1/{action}", key)
    return DialogueEditedV1(
        event_id=ids.event_id("edit", edit), edit_id=edit, meeting_id="m1", dialogue_id="dlg_1",
        action=action, text=text, editor=editor, edited_at_ms=now, idempotency_key=key,
    )  # fmt: skip


def test_an_edit_retried_later_is_the_same_request() -> None:
    first, retry = as_stored(_dialogue_edit("k", now=1000)), as_stored(_dialogue_edit("k", now=99_000))
    assert differing(first, retry, EDIT_REQUEST_FIELDS) == []
    assert (first["edit_id"], first["idempotency_key"]) == (retry["edit_id"], "k")
    assert first["edited_at_ms"] != retry["edited_at_ms"], "time is not part of the request"


def test_another_edit_with_the_same_key_differs() -> None:
    first = as_stored(_dialogue_edit("k"))
    assert differing(first, as_stored(_dialogue_edit("k", text="Other.")), EDIT_REQUEST_FIELDS) == ["text"]
    assert differing(first, as_stored(_dialogue_edit("k", editor="dan")), EDIT_REQUEST_FIELDS) == ["editor"]
    deleted = as_stored(_dialogue_edit("k", action="delete", text=None))
    assert differing(first, deleted, EDIT_REQUEST_FIELDS) == ["action", "text"]
    transcript = as_stored(TranscriptEditedV1(
        event_id="evt_t", edit_id="edt_t", meeting_id="m1", action="edit", text="Fixed.", editor="carol",
        edited_at_ms=1, idempotency_key="k",
    ))  # fmt: skip
    assert differing(first, transcript, EDIT_REQUEST_FIELDS) == ["target_kind", "target_id"]


def test_action_item_edits_compare_their_fields() -> None:
    def edit(**fields: Any) -> dict[str, Any]:
        return as_stored(ActionItemEditedV1(
            event_id="evt_a", edit_id="edt_a", meeting_id="m1", action_item_id="ai_1", action="edit",
            editor="bob", edited_at_ms=1, idempotency_key="k", **fields,
        ))  # fmt: skip

    assert differing(edit(status="done", priority="high"), edit(priority="high", status="done"),
                     EDIT_REQUEST_FIELDS) == []  # fmt: skip
    assert differing(edit(status="done"), edit(status="pending"), EDIT_REQUEST_FIELDS) == ["fields"]


# --- memory, store, lock ---------------------------------------------------------------------------------


class _Stored:
    """What the store holds for a key: counts the look-ups."""

    def __init__(self, row: dict[str, Any] | None):
        self.row, self.lookups = row, 0

    async def __call__(self) -> dict[str, Any] | None:
        self.lookups += 1
        return self.row


REQUEST = {"message_id": "msg_1", "user_id": "usr_a", "text": "hi"}


async def _earlier(writes: KeyedWrites, requested: dict[str, Any], stored: _Stored) -> dict[str, Any] | None:
    scope = scope_of("chat", "m1", "k")
    return await earlier_write(writes, scope, "k", requested, CHAT_REQUEST_FIELDS, "message_id", stored)


async def test_a_new_key_has_no_earlier_write() -> None:
    stored = _Stored(None)
    assert await _earlier(KeyedWrites(), REQUEST, stored) is None
    assert stored.lookups == 1


async def test_within_the_memory_the_store_is_not_asked() -> None:
    writes, stored = KeyedWrites(), _Stored(None)
    writes.remember(scope_of("chat", "m1", "k"), {**REQUEST, "sent_at_ms": 5})
    assert await _earlier(writes, REQUEST, stored) == {**REQUEST, "sent_at_ms": 5}
    with pytest.raises(HTTPException) as raised:
        await _earlier(writes, {**REQUEST, "text": "other"}, stored)
    assert raised.value.status_code == 409 and "msg_1" in raised.value.detail
    assert stored.lookups == 0


async def test_after_the_memory_the_store_answers() -> None:
    now = [0.0]
    writes = KeyedWrites(ttl_s=60, clock=lambda: now[0])
    writes.remember(scope_of("chat", "m1", "k"), {**REQUEST, "sent_at_ms": 5})
    now[0] = 61
    stored = _Stored({**REQUEST, "sent_at_ms": 5})
    assert await _earlier(writes, REQUEST, stored) == {**REQUEST, "sent_at_ms": 5}
    with pytest.raises(HTTPException) as raised:
        await _earlier(writes, {**REQUEST, "user_id": "usr_b"}, stored)
    assert raised.value.status_code == 409 and "user_id" in raised.value.detail
    assert stored.lookups == 2


async def test_forget_drops_the_memory() -> None:
    writes = KeyedWrites()
    writes.remember("s", {"a": 1})
    writes.forget()
    assert writes.recent("s") is None


async def test_one_key_at_a_time_other_keys_meanwhile() -> None:
    writes = KeyedWrites()
    order: list[str] = []
    first_inside, release_first = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with writes.hold("a"):
            order.append("first in")
            first_inside.set()
            await release_first.wait()
            order.append("first out")

    async def second_same_key() -> None:
        async with writes.hold("a"):
            order.append("same key in")

    async def other_key() -> None:
        async with writes.hold("b"):
            order.append("other key in")

    holder = asyncio.create_task(first())
    await first_inside.wait()
    waiter = asyncio.create_task(second_same_key())
    await other_key()  # not held up by key "a"
    await asyncio.sleep(0)  # let the waiter try
    assert order == ["first in", "other key in"]
    assert writes.held() == 1
    release_first.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first in", "other key in", "first out", "same key in"]
    assert writes.held() == 0, "no lock outlives its requests"


def test_recent_writes_clear() -> None:
    recent: RecentWrites[int] = RecentWrites()
    recent.put("a", 1)
    recent.clear()
    assert recent.get("a") is None and recent.values() == []


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_empty_or_overlong_key_is_bad_input(key: str) -> None:
    from fastapi.testclient import TestClient

    from palaver.settings import Settings
    from stack.web import create_app

    client = TestClient(create_app(Settings(), {"api"}))  # no lifespan: validation answers before the handler
    headers = {"Idempotency-Key": key}
    user = client.post("/v1/users", json={"username": "ana", "email": "a@b.io", "password": "p" * 8},
                       headers=headers)  # fmt: skip
    assert user.status_code == 422 and "idempotency-key" in str(user.json()["detail"]).lower()
    # Writes to a meeting ask who is calling before anything else.
    chat = client.post("/v1/meetings/m1/chat", json={"text": "hi"}, headers=headers)
    assert chat.status_code == 401
