"""Users and meeting chat through the real API, broker and store: writes are events on the users and chat
topics, the store writer upserts them, reads see the newest version, and a replayed event adds no row; an
Idempotency-Key reused after the API forgot it finds the earlier message or edit in the store. Who may do
what: anyone registers (as a member); a signed-in user reads and changes only their own account; chat
messages and edits are the signed-in caller's; a meeting's chat is its members' (viewers read only)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.passwords import verify_password
from palaver import ids
from palaver.demo.accounts import ApiError, invite, sign_in
from palaver.events import DialogueUpdateV1, encode
from palaver.events.registry import CHAT, DIALOGUES, EDITS, USERS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer, make_producer
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import open_meeting, register

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple horse battery correct"


@pytest.fixture(scope="module")
async def web(
    infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Web]:
    """API and store writer in this process on fresh topics and a fresh database (no STT, no merger)."""
    async with running_web(infra, clickhouse_client, tmp_path_factory) as found:
        yield found


async def read_topic(settings: Settings, name: str) -> list[bytes]:
    """Every message on the topic so far."""
    consumer = make_consumer(settings, None, topic_name(settings.topic_namespace, name))
    await consumer.start()
    try:
        out: list[bytes] = []
        while batches := await consumer.getmany(timeout_ms=1000):
            out += [r.value for records in batches.values() for r in records]
        return out
    finally:
        await consumer.stop()


async def replay(settings: Settings, topic: str, value: bytes, key: bytes) -> int:
    """Deliver an event again, as a producer retry or a re-run would; returns its new offset."""
    producer = make_producer(settings)
    await producer.start()
    try:
        return (
            await producer.send_and_wait(topic_name(settings.topic_namespace, topic), value, key=key)
        ).offset
    finally:
        await producer.stop()


async def test_users_lifecycle(web: Web) -> None:
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as anonymous:
        body = {"username": "Ana", "email": "ana@example.com", "password": PASSWORD}
        created = await anonymous.post("/v1/users", json=body, headers={"Idempotency-Key": "ana-signup"})
        assert created.status_code == 201, created.text
        ana = created.json()
        assert set(ana) == {
            "user_id",
            "username",
            "email",
            "role",
            "profile_pic_url",
            "created_at_ms",
            "updated_at_ms",
        }
        assert (ana["username"], ana["role"], ana["profile_pic_url"]) == ("Ana", "member", "")
        uid = ana["user_id"]

        retry = await anonymous.post("/v1/users", json=body, headers={"Idempotency-Key": "ana-signup"})
        assert (retry.status_code, retry.json()) == (201, ana), "a retried create answers with the same user"
        # Usernames and emails are unique (case-insensitively), checked before the store has the first user.
        dup_name = await anonymous.post(
            "/v1/users", json={**body, "username": "ANA", "email": "other@example.com"}
        )
        assert (dup_name.status_code, dup_name.json()["detail"]) == (409, "username already taken")
        dup_mail = await anonymous.post("/v1/users", json={**body, "username": "ana2", "email": "ANA@example.com"})
        assert (dup_mail.status_code, dup_mail.json()["detail"]) == (409, "email already taken")
        # Anyone may register, as a member; nobody reads users without signing in.
        admin = await anonymous.post("/v1/users", json={**body, "username": "boss", "email": "boss@example.com",
                                                        "role": "admin"})  # fmt: skip
        assert admin.status_code == 422 and "role" in admin.text, "a registration names no role: always a member"
        for path in ("/v1/users", f"/v1/users/{uid}"):
            assert (await anonymous.get(path)).status_code == 401

        # Bad input: clear errors that never echo a password.
        for bad in (
            {**body, "username": "a b"},
            {**body, "email": "not-an-email"},
            {**body, "role": "root"},
            {**body, "profile_pic_url": "javascript:alert(1)"},
            {"email": "x@example.com", "password": PASSWORD},
        ):
            got = await anonymous.post("/v1/users", json=bad)
            assert got.status_code == 422, (bad, got.text)
            assert PASSWORD not in got.text
        short = await anonymous.post("/v1/users", json={**body, "username": "shorty", "password": "s3cret"})
        assert short.status_code == 422 and "s3cret" not in short.text

    signed_in = await sign_in(web.url, "Ana", PASSWORD)
    ben = await register(web.url, "ben-of-lifecycle")
    async with signed_in.client() as http, ben.client() as other:
        # Two quick changes: the second starts from the first even before the store has it.
        first = await http.patch(f"/v1/users/{uid}", json={"email": "ana@example.org"})
        second = await http.patch(
            f"/v1/users/{uid}", json={"profile_pic_url": "https://cdn.example.com/ana.png"}
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert (second.json()["email"], second.json()["profile_pic_url"]) == (
            "ana@example.org",
            "https://cdn.example.com/ana.png",
        )
        assert second.json()["created_at_ms"] == ana["created_at_ms"]
        assert (await http.patch(f"/v1/users/{uid}", json={"role": "admin"})).status_code == 403, (
            "only admins change roles, their own included"
        )

        stored = await poll(lambda: http.get("/v1/users", params={"username": "ana"}),
                             lambda r: r.json()["users"] and r.json()["users"][0]["email"] == "ana@example.org"
                             and r.json()["users"][0]["profile_pic_url"], "both changes in the store")  # fmt: skip
        assert stored.json()["users"] == [second.json()]
        assert (await http.get(f"/v1/users/{uid}")).json() == second.json()
        assert (await http.get("/v1/users")).json()["users"] == [second.json()], "a member sees only itself"

        # Another user's account answers as an unknown one, to read, change or delete.
        assert (await other.get(f"/v1/users/{uid}")).status_code == 404
        assert (await other.patch(f"/v1/users/{uid}", json={"profile_pic_url": ""})).status_code == 404
        assert (await other.delete(f"/v1/users/{uid}")).status_code == 404
        assert (await other.get("/v1/users", params={"username": "ana"})).json()["users"] == []
        assert [u["user_id"] for u in (await other.get("/v1/users")).json()["users"]] == [ben.user_id]

        # Password change: needs the current password; the stored hash is salted scrypt of the new one.
        wrong = await http.patch(
            f"/v1/users/{uid}", json={"password": NEW_PASSWORD, "current_password": "nope-nope"}
        )
        assert wrong.status_code == 403
        missing = await http.patch(f"/v1/users/{uid}", json={"password": NEW_PASSWORD})
        assert missing.status_code == 422
        changed = await http.patch(
            f"/v1/users/{uid}", json={"password": NEW_PASSWORD, "current_password": PASSWORD}
        )
        assert changed.status_code == 200, changed.text
        # ... and ends every session of the user: the old token no longer works, nor the old password.
        assert (await http.get(f"/v1/users/{uid}")).status_code == 401
    with pytest.raises(ApiError) as refused:
        await sign_in(web.url, "Ana", PASSWORD)
    assert refused.value.status == 401

    async def stored_hash() -> str:
        rows = await web.store.aquery(
            f"SELECT password_hash FROM {web.store.database}.users FINAL WHERE user_id = {{u:String}}",
            {"u": uid},
        )
        return rows[0]["password_hash"] if rows else ""

    hashed = await poll(stored_hash, lambda h: verify_password(NEW_PASSWORD, h), "the new password's hash")
    assert hashed.startswith("scrypt$") and not verify_password(PASSWORD, hashed)

    signed_in = await sign_in(web.url, "ana", NEW_PASSWORD)  # the username, case-insensitively
    async with signed_in.client() as http:
        assert (await http.patch(f"/v1/users/{uid}", json={})).status_code == 422
        assert (await http.get("/v1/users/usr_000000000000000000000000")).status_code == 404
        assert (await http.get("/v1/users/not-an-id")).status_code == 422

        # Soft delete: the account can no longer be used, the username is free again.
        assert (await http.delete(f"/v1/users/{uid}")).status_code == 204
        assert (await http.get(f"/v1/users/{uid}")).status_code == 401, "a deleted user's token is dead"
    with pytest.raises(ApiError) as refused:
        await sign_in(web.url, "Ana", NEW_PASSWORD)
    assert refused.value.status == 401
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as anonymous:
        again = await anonymous.post("/v1/users", json={**body, "password": "another password"})
    assert again.status_code == 201 and again.json()["user_id"] != uid
    new_ana = await sign_in(web.url, "Ana", "another password")
    assert new_ana.user_id == again.json()["user_id"]
    async with new_ana.client() as http:
        await poll(
            lambda: http.get("/v1/users", params={"username": "ana"}),
            lambda r: [u["user_id"] for u in r.json()["users"]] == [again.json()["user_id"]],
            "the new Ana",
        )
    async with ben.client() as other:
        assert (await other.get(f"/v1/users/{uid}")).status_code == 404

    # The log never held a plaintext password; it holds the hashes (the store's source).
    events = await read_topic(web.settings, USERS.name)
    assert len(events) >= 6
    assert not any(
        secret.encode() in e for e in events for secret in (PASSWORD, NEW_PASSWORD, "another password")
    )
    assert all(b'"password_hash":"scrypt$' in e for e in events)


async def test_chat_and_replayed_events(web: Web) -> None:
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as anonymous:
        assert (await anonymous.get("/v1/meetings/no-such-meeting/chat")).status_code == 401
    outsider = await register(web.url, f"dov-{tag}")
    async with outsider.client() as http:
        assert (await http.post("/v1/meetings/mtg_unknown/chat", json={"text": "hi"})).status_code == 404
    # bea owns the meeting, cai takes part, eve may only watch.
    meeting = await open_meeting(web.url, ["bea", "cai"], tag=tag, title="chat")
    meeting_id, bea, cai = meeting.meeting_id, meeting.people["bea"], meeting.people["cai"]
    eve = await register(web.url, f"eve-{tag}")
    await invite(bea, meeting_id, eve, role="viewer")
    chat = f"/v1/meetings/{meeting_id}/chat"
    async with bea.client() as http, cai.client() as cai_http, eve.client() as viewer, outsider.client() as stranger:
        # The meeting answers at once to the process that created it (its own recent write).
        first = await http.post(chat, json={"text": "Hello, all!"}, headers={"Idempotency-Key": "bea-1"})
        assert first.status_code == 202, first.text
        sent = first.json()
        assert (sent["status"], sent["text"], sent["user_id"], sent["meeting_id"]) == (
            "accepted",
            "Hello, all!",
            bea.user_id,
            meeting_id,
        )
        retry = await http.post(chat, json={"text": "Hello, all!"}, headers={"Idempotency-Key": "bea-1"})
        assert retry.json() == sent, "a retried post is the same message"
        assert (await cai_http.post(chat, json={"text": "Hi Bea"})).status_code == 202
        # The writer is the caller: a user_id in the body is not taken.
        spoofed = await http.post(chat, json={"user_id": cai.user_id, "text": "Agenda is in the doc"})
        assert spoofed.status_code == 202 and spoofed.json()["user_id"] == bea.user_id, spoofed.text

        # Who may write and read: not a stranger (the meeting does not exist for them), not anonymous
        # callers; a viewer reads, but does not write.
        assert (await stranger.post(chat, json={"text": "x"})).status_code == 404
        assert (await stranger.get(chat)).status_code == 404
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as anonymous:
            assert (await anonymous.post(chat, json={"text": "x"})).status_code == 401
            assert (await anonymous.get(chat)).status_code == 401
        assert (await viewer.post(chat, json={"text": "x"})).status_code == 403
        assert (await http.post(chat, json={"text": "   "})).status_code == 422
        assert (await http.post(chat, json={"text": "x" * 4001})).status_code == 422
        assert (await http.post(chat, json={})).status_code == 422

        got = await poll(lambda: viewer.get(chat), lambda r: len(r.json()["messages"]) >= 3, "three messages")
        messages = got.json()["messages"]
        assert [(m["user_id"], m["text"]) for m in messages] == [
            (bea.user_id, "Hello, all!"), (cai.user_id, "Hi Bea"), (bea.user_id, "Agenda is in the doc")]  # fmt: skip
        assert [m["sent_at_ms"] for m in messages] == sorted(m["sent_at_ms"] for m in messages)
        assert messages[0] == {k: v for k, v in sent.items() if k != "status"}
        later = await cai_http.get(chat, params={"since_ms": messages[1]["sent_at_ms"]})
        assert [m["message_id"] for m in later.json()["messages"]] == [m["message_id"] for m in messages[1:]]
        assert (await http.get("/v1/meetings/no-such-meeting/chat")).status_code == 404

        # Replay: the same chat and user events delivered again add no rows.
        chat_event = next(
            e for e in await read_topic(web.settings, CHAT.name) if sent["message_id"].encode() in e
        )
        user_event = [e for e in await read_topic(web.settings, USERS.name) if bea.user_id.encode() in e][-1]
        chat_offset = await replay(web.settings, CHAT.name, chat_event, meeting_id.encode())
        user_offset = await replay(web.settings, USERS.name, user_event, bea.user_id.encode())

        async def provenance(table: str, column: str, row_id: str) -> list[dict[str, Any]]:
            return await web.store.aquery(
                f"SELECT kafka_offset, event_id FROM {web.store.database}.{table} FINAL WHERE {column} = {{i:String}}",
                {"i": row_id})  # fmt: skip

        # Equal versions: FINAL keeps the row inserted last, so its offset shows the replay was written.
        await poll(
            lambda: provenance("chat_messages", "message_id", sent["message_id"]),
            lambda rows: [r["kafka_offset"] for r in rows] == [chat_offset],
            "the replayed chat message",
        )
        await poll(
            lambda: provenance("users", "user_id", bea.user_id),
            lambda rows: [r["kafka_offset"] for r in rows] == [user_offset],
            "the replayed user",
        )
        again = await http.get(chat)
        assert again.json()["messages"] == messages
        listed = (await http.get("/v1/users", params={"username": bea.username})).json()["users"]
        assert [u["user_id"] for u in listed] == [bea.user_id]


async def test_idempotency_keys_outlive_the_api_memory(web: Web) -> None:
    """A reused key answers with the earlier message or edit when the request is the same and 409 when it
    is not (another text, another caller), within the API's memory and after it (then from the store), and
    never writes again."""
    meeting = await open_meeting(web.url, ["dee", "eli"], title="idempotency")
    meeting_id, dee, eli = meeting.meeting_id, meeting.people["dee"], meeting.people["eli"]
    dialogue_id, run = ids.dialogue_id(meeting_id, "utt_1"), "whisper:tiny.en"
    dialogue = DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", dialogue_id, run, 1), dialogue_id=dialogue_id,
        meeting_id=meeting_id, speaker_id=dee.user_id, start_ms=0, end_ms=900, text="hello al", status="final",
        revision=1, position=0, utterance_ids=("utt_1",), run=run,
    )  # fmt: skip
    await replay(web.settings, DIALOGUES.name, encode(dialogue), meeting_id.encode())

    async with dee.client() as http, eli.client() as other:
        chat = f"/v1/meetings/{meeting_id}/chat"
        body = {"text": "Minutes are in the doc."}
        chat_key = {"Idempotency-Key": "dee-minutes"}
        first = await http.post(chat, json=body, headers=chat_key)
        assert first.status_code == 202, first.text
        sent = first.json()
        edit_path = f"/v1/meetings/{meeting_id}/dialogues/{dialogue_id}"
        fix, edit_key = {"text": "Hello, all."}, {"Idempotency-Key": "dee-fix"}
        edited = await poll(lambda: http.put(edit_path, json=fix, headers=edit_key),
                            lambda r: r.status_code != 404, "the dialogue in the store")  # fmt: skip
        assert edited.status_code == 202, edited.text
        edit = edited.json()

        async def reuse_keys() -> None:
            again = await http.post(chat, json=body, headers=chat_key)
            assert (again.status_code, again.json()) == (202, sent), "the same message, its first sent_at_ms"
            for caller, other_body in ((http, {"text": "Something else."}), (other, body)):
                refused = await caller.post(chat, json=other_body, headers=chat_key)
                assert refused.status_code == 409, refused.text
                detail = refused.json()["detail"]
                assert "'dee-minutes'" in detail and sent["message_id"] in detail and "new key" in detail
            again = await http.put(edit_path, json=fix, headers=edit_key)
            assert (again.status_code, again.json()) == (202, edit)
            refused = await http.put(edit_path, json={**fix, "text": "Goodbye."}, headers=edit_key)
            assert refused.status_code == 409 and "differs in text" in refused.json()["detail"], refused.text
            refused = await other.put(edit_path, json=fix, headers=edit_key)
            assert refused.status_code == 409 and "editor" in refused.json()["detail"], refused.text
            deleting = await http.delete(edit_path, headers=edit_key)
            assert deleting.status_code == 409 and "action" in deleting.json()["detail"], deleting.text

        await reuse_keys()  # within the API's memory: the store may not have them yet

        # Once the store has both, the API forgets (as after a few minutes, or in another process).
        await poll(lambda: http.get(chat), lambda r: [m["message_id"] for m in r.json()["messages"]]
                   == [sent["message_id"]], "the message in the store")  # fmt: skip
        history = f"{edit_path}/history"
        await poll(lambda: http.get(history), lambda r: len(r.json()["edits"]) == 1, "the edit in the store")
        web.app.state.idempotency.forget()
        await reuse_keys()

        # Nothing was written again: one event per key in the log, one row per key, unchanged.
        chat_events = [e for e in await read_topic(web.settings, CHAT.name) if b'"dee-minutes"' in e]
        edit_events = [e for e in await read_topic(web.settings, EDITS.name) if b'"dee-fix"' in e]
        assert (len(chat_events), len(edit_events)) == (1, 1)
        db = web.store.database
        rows = await web.store.aquery(
            "SELECT message_id, user_id, text, toUnixTimestamp64Milli(sent_at) AS sent_at_ms "
            f"FROM {db}.chat_messages WHERE meeting_id = {{m:String}} AND idempotency_key = 'dee-minutes'",
            {"m": meeting_id})  # fmt: skip
        assert rows == [{k: sent[k] for k in ("message_id", "user_id", "text", "sent_at_ms")}]
        assert sent["user_id"] == dee.user_id
        rows = await web.store.aquery(
            f"SELECT edit_id, action, text, editor FROM {db}.edits WHERE meeting_id = {{m:String}} "
            "AND idempotency_key = 'dee-fix'", {"m": meeting_id})  # fmt: skip
        assert rows == [{"edit_id": edit["edit_id"], "action": "edit", "text": "Hello, all.", "editor": dee.user_id}]
        shown = (await http.get(f"/v1/meetings/{meeting_id}/dialogues")).json()["dialogues"]
        assert [(d["dialogue_id"], d["text"], d["edited"]) for d in shown] == [
            (dialogue_id, "Hello, all.", True)
        ]
