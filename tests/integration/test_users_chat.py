"""Users and meeting chat through the real API, broker and store: writes are events on the users and chat
topics, the store writer upserts them, reads see the newest version, and a replayed event adds no row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from api.passwords import verify_password
from palaver import ids
from palaver.events import StreamStartedV1, encode
from palaver.events.registry import CHAT, TRANSCRIPTS, USERS, topic_name
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.migrations import apply_migrations
from palaver.streams.clients import ensure_topics, make_consumer, make_producer
from stack.web import create_app
from tests.integration.conftest import _wait_http, make_settings, poll
from tests.integration.infra import Infra

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple horse battery correct"


@dataclass
class Web:
    settings: Settings
    store: Store
    url: str


@pytest.fixture(scope="module")
async def web(
    infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Web]:
    """API and store writer in this process on fresh topics and a fresh database (no STT, no merger)."""
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path_factory.mktemp(f"users-{tag}"), f"t{tag}", f"t_{tag}")
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, {"api", "store"}, store=store), host="127.0.0.1",
                                           port=settings.api_port, log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await _wait_http(url)
        yield Web(settings, store, url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


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
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        body = {"username": "Ana", "email": "ana@example.com", "password": PASSWORD}
        created = await http.post("/v1/users", json=body, headers={"Idempotency-Key": "ana-signup"})
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

        retry = await http.post("/v1/users", json=body, headers={"Idempotency-Key": "ana-signup"})
        assert (retry.status_code, retry.json()) == (201, ana), "a retried create answers with the same user"
        # Usernames and emails are unique (case-insensitively), checked before the store has the first user.
        dup_name = await http.post(
            "/v1/users", json={**body, "username": "ANA", "email": "other@example.com"}
        )
        assert (dup_name.status_code, dup_name.json()["detail"]) == (409, "username already taken")
        dup_mail = await http.post("/v1/users", json={**body, "username": "ana2", "email": "ANA@example.com"})
        assert (dup_mail.status_code, dup_mail.json()["detail"]) == (409, "email already taken")

        # Two quick changes: the second starts from the first even before the store has it.
        first = await http.patch(f"/v1/users/{uid}", json={"role": "admin"})
        second = await http.patch(
            f"/v1/users/{uid}", json={"profile_pic_url": "https://cdn.example.com/ana.png"}
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert (second.json()["role"], second.json()["profile_pic_url"]) == (
            "admin",
            "https://cdn.example.com/ana.png",
        )
        assert second.json()["created_at_ms"] == ana["created_at_ms"]

        stored = await poll(lambda: http.get("/v1/users", params={"username": "ana"}),
                             lambda r: r.json()["users"] and r.json()["users"][0]["role"] == "admin"
                             and r.json()["users"][0]["profile_pic_url"], "both changes in the store")  # fmt: skip
        assert stored.json()["users"] == [second.json()]
        assert (await http.get(f"/v1/users/{uid}")).json() == second.json()

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

        async def stored_hash() -> str:
            rows = await web.store.aquery(
                f"SELECT password_hash FROM {web.store.database}.users FINAL WHERE user_id = {{u:String}}",
                {"u": uid},
            )
            return rows[0]["password_hash"] if rows else ""

        hashed = await poll(
            stored_hash, lambda h: verify_password(NEW_PASSWORD, h), "the new password's hash"
        )
        assert hashed.startswith("scrypt$") and not verify_password(PASSWORD, hashed)

        # Bad input: clear errors that never echo a password.
        for bad in (
            {**body, "username": "a b"},
            {**body, "email": "not-an-email"},
            {**body, "role": "root"},
            {**body, "profile_pic_url": "javascript:alert(1)"},
            {"email": "x@example.com", "password": PASSWORD},
        ):
            got = await http.post("/v1/users", json=bad)
            assert got.status_code == 422, (bad, got.text)
            assert PASSWORD not in got.text
        short = await http.post("/v1/users", json={**body, "username": "shorty", "password": "s3cret"})
        assert short.status_code == 422 and "s3cret" not in short.text
        assert (await http.patch(f"/v1/users/{uid}", json={})).status_code == 422
        assert (await http.get("/v1/users/usr_000000000000000000000000")).status_code == 404
        assert (await http.get("/v1/users/not-an-id")).status_code == 422

        # Soft delete: gone from reads, the username is free again.
        assert (await http.delete(f"/v1/users/{uid}")).status_code == 204
        assert (await http.get(f"/v1/users/{uid}")).status_code == 404
        assert (await http.delete(f"/v1/users/{uid}")).status_code == 404
        again = await http.post("/v1/users", json={**body, "password": "another password"})
        assert again.status_code == 201 and again.json()["user_id"] != uid
        await poll(
            lambda: http.get("/v1/users", params={"username": "ana"}),
            lambda r: [u["user_id"] for u in r.json()["users"]] == [again.json()["user_id"]],
            "the new Ana",
        )

    # The log never held a plaintext password; it holds the hashes (the store's source).
    events = await read_topic(web.settings, USERS.name)
    assert len(events) >= 6
    assert not any(
        secret.encode() in e for e in events for secret in (PASSWORD, NEW_PASSWORD, "another password")
    )
    assert all(b'"password_hash":"scrypt$' in e for e in events)


async def test_chat_and_replayed_events(web: Web) -> None:
    meeting_id = f"m-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        users = []
        for name in ("bea", "cai"):
            got = await http.post(
                "/v1/users", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
            )
            assert got.status_code == 201
            users.append(got.json()["user_id"])
        bea, cai = users
        chat = f"/v1/meetings/{meeting_id}/chat"
        assert (await http.post(chat, json={"user_id": bea, "text": "hi"})).status_code == 404, (
            "no such meeting yet"
        )

        # A meeting exists once a stream of it starts (the ingest's event, forwarded on the transcripts topic).
        stream = ids.stream_id(meeting_id, "bea")
        started = StreamStartedV1(event_id=ids.event_id("stream.started", stream, 0), meeting_id=meeting_id,
                                  speaker_id="bea", stream_id=stream, sample_rate=16000, stream_start_ms=0)  # fmt: skip
        await replay(web.settings, TRANSCRIPTS.name, encode(started), meeting_id.encode())

        first = await poll(lambda: http.post(chat, json={"user_id": bea, "text": "Hello, all!"},
                                              headers={"Idempotency-Key": "bea-1"}),
                            lambda r: r.status_code != 404, "the meeting in the store")  # fmt: skip
        assert first.status_code == 202, first.text
        sent = first.json()
        assert (sent["status"], sent["text"], sent["user_id"], sent["meeting_id"]) == (
            "accepted",
            "Hello, all!",
            bea,
            meeting_id,
        )
        retry = await http.post(
            chat, json={"user_id": bea, "text": "Hello, all!"}, headers={"Idempotency-Key": "bea-1"}
        )
        assert retry.json() == sent, "a retried post is the same message"
        for text, who in (("Hi Bea", cai), ("Agenda is in the doc", bea)):
            assert (await http.post(chat, json={"user_id": who, "text": text})).status_code == 202

        assert (
            await http.post(chat, json={"user_id": "usr_000000000000000000000000", "text": "x"})
        ).status_code == 404
        assert (await http.post(chat, json={"user_id": bea, "text": "   "})).status_code == 422
        assert (await http.post(chat, json={"user_id": bea, "text": "x" * 4001})).status_code == 422
        assert (await http.post(chat, json={"text": "who am I"})).status_code == 422

        got = await poll(lambda: http.get(chat), lambda r: len(r.json()["messages"]) >= 3, "three messages")
        messages = got.json()["messages"]
        assert [(m["user_id"], m["text"]) for m in messages] == [(bea, "Hello, all!"), (cai, "Hi Bea"),
                                                                 (bea, "Agenda is in the doc")]  # fmt: skip
        assert [m["sent_at_ms"] for m in messages] == sorted(m["sent_at_ms"] for m in messages)
        assert messages[0] == {k: v for k, v in sent.items() if k != "status"}
        later = await http.get(chat, params={"since_ms": messages[1]["sent_at_ms"]})
        assert [m["message_id"] for m in later.json()["messages"]] == [m["message_id"] for m in messages[1:]]
        assert (await http.get("/v1/meetings/no-such-meeting/chat")).json()["messages"] == []

        # Replay: the same chat and user events delivered again add no rows.
        chat_event = next(
            e for e in await read_topic(web.settings, CHAT.name) if sent["message_id"].encode() in e
        )
        user_event = [e for e in await read_topic(web.settings, USERS.name) if bea.encode() in e][-1]
        chat_offset = await replay(web.settings, CHAT.name, chat_event, meeting_id.encode())
        user_offset = await replay(web.settings, USERS.name, user_event, bea.encode())

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
            lambda: provenance("users", "user_id", bea),
            lambda rows: [r["kafka_offset"] for r in rows] == [user_offset],
            "the replayed user",
        )
        again = await http.get(chat)
        assert again.json()["messages"] == messages
        assert [
            u["user_id"] for u in (await http.get("/v1/users", params={"username": "bea"})).json()["users"]
        ] == [bea]
