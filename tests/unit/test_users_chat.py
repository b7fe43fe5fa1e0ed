"""Users and chat: password hashing, the users API's pure state logic, redaction, and row mapping."""

from __future__ import annotations

import orjson
import pytest

from api.passwords import hash_password, needs_rehash, verify_password
from api.user_state import RecentWrites, UserRecord, new_user, newest
from api.users import redact_secrets
from palaver import ids
from palaver.events import ChatMessageV1, UserChangedV1, decode, encode
from palaver.store.rows import COLUMNS, Provenance, rows_for

FAST = {"n": 2**10, "r": 8, "p": 1}  # the stored parameters are honoured whatever they are

# --- passwords -------------------------------------------------------------------------------------------


def test_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("correct horse", **FAST), hash_password("correct horse", **FAST)
    assert first != second, "a fresh salt per hash"
    assert first.startswith("scrypt$n=1024,r=8,p=1$")
    assert "correct horse" not in first
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("", first)


def test_default_parameters_are_slow_and_flagged_when_outdated() -> None:
    stored = hash_password("pw-12345678")
    assert stored.startswith("scrypt$n=16384,r=8,p=5$")
    assert verify_password("pw-12345678", stored)
    assert not needs_rehash(stored)
    assert needs_rehash(hash_password("pw-12345678", **FAST))


def test_unicode_password() -> None:
    stored = hash_password("pässwörd-日本", **FAST)
    assert verify_password("pässwörd-日本", stored)
    assert not verify_password("passwort-日本", stored)


@pytest.mark.parametrize("stored", [
    "", "garbage", "scrypt$$$", "bcrypt$n=1024,r=8,p=1$c2FsdA$a2V5", "scrypt$n=1000,r=8,p=1$c2FsdA$a2V5",
    "scrypt$n=4194304,r=8,p=1$c2FsdA$a2V5", "scrypt$r=8,p=1$c2FsdA$a2V5", "scrypt$n=1024,r=8,p=1$c2FsdA$",
    "scrypt$n=x,r=8,p=1$c2FsdA$a2V5", "scrypt$n=1024,r=8,p=1$c2FsdA$a2V5$extra",
])  # fmt: skip
def test_malformed_or_hostile_hashes_do_not_verify(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_tampered_hash_does_not_verify() -> None:
    stored = hash_password("pw-12345678", **FAST)
    scheme, params, salt, key = stored.split("$")
    flipped = key[:-2] + ("A" if key[-2] != "A" else "B") + key[-1]
    assert not verify_password("pw-12345678", "$".join((scheme, params, salt, flipped)))


# --- user state ------------------------------------------------------------------------------------------


def _alice(**changes: object) -> UserRecord:
    record = new_user("usr_" + "a" * 24, "Alice", "Alice@Example.com", "scrypt$h", "member", "", 1_000)
    return record.changed(2_000, **changes) if changes else record


def test_public_view_never_carries_the_hash() -> None:
    public = _alice().public()
    assert "password_hash" not in public and "scrypt$h" not in orjson.dumps(public).decode()
    assert "scrypt$h" not in repr(_alice())


def test_changed_versions_only_go_up_even_when_the_clock_goes_back() -> None:
    alice = _alice()
    later = alice.changed(500, role="admin")
    assert later.user_version == alice.user_version + 1
    assert (later.role, later.created_at_ms, later.updated_at_ms) == ("admin", 1_000, 500)
    assert alice.changed(9_000).user_version == 9_000


def test_event_round_trips_and_ids_are_deterministic() -> None:
    record = _alice(role="admin")
    event = record.event("updated")
    assert event.event_id == ids.event_id("user.changed", record.user_id, record.user_version)
    assert decode(encode(event)) == event
    assert UserRecord.from_event(event) == record
    assert record.event("updated") == event


def test_newest_takes_the_highest_version_per_user() -> None:
    old, new = _alice(), _alice(username="alicia")
    bob = new_user("usr_" + "b" * 24, "bob", "bob@example.com", "h", "member", "", 5)
    assert newest([new, bob], [old]) == {old.user_id: new, bob.user_id: bob}
    assert newest([old], [new])[old.user_id] == new


def test_recent_writes_forget_after_ttl_and_beyond_capacity() -> None:
    now = [0.0]
    recent: RecentWrites[int] = RecentWrites(ttl_s=10, max_items=2, clock=lambda: now[0])
    recent.put("a", 1)
    now[0] = 5
    recent.put("b", 2)
    recent.put("a", 3)  # rewriting moves it to the back
    assert (recent.get("a"), recent.values()) == (3, [2, 3])
    recent.put("c", 4)
    assert recent.get("b") is None and recent.values() == [3, 4]
    now[0] = 16
    assert recent.values() == []


# --- redaction -------------------------------------------------------------------------------------------


def test_validation_errors_never_echo_a_password() -> None:
    errors = [
        {"type": "missing", "loc": ("body", "username"), "msg": "Field required",
         "input": {"email": "a@b.io", "password": "hunter22!"}},
        {"type": "string_type", "loc": ("body", "current_password"), "msg": "not a string", "input": 42},
        {"type": "string_pattern_mismatch", "loc": ("body", "email"), "msg": "bad", "input": "nope"},
    ]  # fmt: skip
    out = redact_secrets(errors)
    assert "hunter22!" not in orjson.dumps(out).decode()
    assert out[0]["input"] == {"email": "a@b.io", "password": "**********"}
    assert "input" not in out[1]
    assert out[2] == errors[2]
    assert errors[0]["input"]["password"] == "hunter22!", "the input list is not mutated"


# --- rows ------------------------------------------------------------------------------------------------


def test_user_row_keeps_event_times_version_and_provenance() -> None:
    event = _alice(deleted=True).event("deleted")
    ((table, row),) = rows_for(event, Provenance("ns.users", 2, 7))
    named = dict(zip(COLUMNS[table], row, strict=True))
    assert table == "users"
    assert (named["user_id"], named["deleted"], named["version"]) == (event.user_id, 1, event.user_version)
    assert int(named["created_at"].timestamp() * 1000) == 1_000
    assert int(named["updated_at"].timestamp() * 1000) == 2_000
    assert (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"]) == ("ns.users", 2, 7)
    assert rows_for(event, Provenance("ns.users", 2, 7)) == rows_for(event, Provenance("ns.users", 2, 7))


def test_chat_row_is_one_immutable_version() -> None:
    message_id = ids.chat_message_id("m1", "usr_" + "a" * 24, "k1")
    assert (
        message_id
        == ids.chat_message_id("m1", "usr_" + "a" * 24, "k1")
        != ids.chat_message_id("m1", "usr_" + "a" * 24, "k2")
    )
    event = ChatMessageV1(event_id=ids.event_id("chat.message", message_id), message_id=message_id, meeting_id="m1",
                          user_id="usr_" + "a" * 24, text="hello", sent_at_ms=1_717_400_000_123)  # fmt: skip
    ((table, row),) = rows_for(event, Provenance("chat", 0, 3))
    named = dict(zip(COLUMNS[table], row, strict=True))
    assert (table, named["message_id"], named["text"], named["version"]) == (
        "chat_messages",
        message_id,
        "hello",
        1,
    )
    assert int(named["sent_at"].timestamp() * 1000) == 1_717_400_000_123


def test_user_event_rejects_unknown_roles_and_extra_fields() -> None:
    good = orjson.loads(encode(_alice().event("created")))
    with pytest.raises(ValueError):
        UserChangedV1.model_validate({**good, "role": "root"})
    with pytest.raises(ValueError):
        UserChangedV1.model_validate({**good, "password": "plaintext"})
