"""The live socket's pure parts: its typed messages (api/live_messages.py), what a reconnecting client's
``resume`` and ``chat_since_ms`` leave out, and the hub's memory of recent messages (api/live_buffer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import palaver.events
from api.live_buffer import RecentMessages
from api.live_messages import (
    MAX_RESUME,
    BadResume,
    LiveMessage,
    ResumePoint,
    chat_message,
    message_of,
    resume_point,
    stored_dialogue,
)
from palaver.events import DialogueUpdateV1, MeetingChangedV1, decode

EXAMPLES = Path(palaver.events.__file__).parent / "examples"
FINAL = decode((EXAMPLES / "dialogues/dialogue.update-v1/final-alice.json").read_bytes())
LIVE = decode((EXAMPLES / "dialogues/dialogue.update-v1/live-bob.json").read_bytes())
FINAL_WORDS = decode((EXAMPLES / "dialogues/dialogue.update-v1/final-bob-words.json").read_bytes())
ENDED = decode((EXAMPLES / "meetings/meeting.changed-v1/standup-ended.json").read_bytes())


def _dialogue(position: int, status: str = "final", revision: int = 1, dialogue_id: str = "dlg_1",
              placed: bool = True) -> LiveMessage:  # fmt: skip
    assert isinstance(FINAL, DialogueUpdateV1)
    message = message_of(FINAL.model_copy(update={"position": position, "status": status, "revision": revision,
                                                  "dialogue_id": dialogue_id, "placed": placed}))  # fmt: skip
    assert message is not None
    return message


def _chat(message_id: str, sent_at_ms: int, meeting_id: str = "m1") -> LiveMessage:
    return chat_message({"message_id": message_id, "meeting_id": meeting_id, "user_id": "usr_1", "text": "hi",
                         "sent_at_ms": sent_at_ms})  # fmt: skip


# --- messages ----------------------------------------------------------------------------------------


def test_a_dialogue_event_is_its_own_json_with_a_type() -> None:
    message = message_of(LIVE)
    assert message is not None and message.placed_position is None
    assert orjson.loads(message.text) == {"type": "dialogue", **LIVE.model_dump(mode="json")}
    final = message_of(FINAL)
    assert final is not None and final.placed_position == FINAL.position  # type: ignore[attr-defined]
    words = message_of(FINAL_WORDS)
    assert words is not None and words.placed_position is None, "final words, its place may still change"


def test_a_replays_dialogues_never_go_out_on_the_live_socket() -> None:
    assert isinstance(FINAL, DialogueUpdateV1)
    for run in ("whisper:tiny.en~replay", "whisper:tiny.en~5d1c0a7e"):
        assert message_of(FINAL.model_copy(update={"run": run})) is None, run
    assert message_of(FINAL.model_copy(update={"run": "deepgram:nova-3"})) is not None


def test_a_stored_dialogue_is_a_dialogue_message_too() -> None:
    row: dict[str, Any] = {"dialogue_id": "dlg_1", "speaker_id": "usr_1", "start_ms": 0, "end_ms": 900,
                           "machine_text": "hi", "text": "Hi!", "edited": True, "status": "final", "revision": 3,
                           "position": 4, "placed": True, "run": "whisper:tiny.en", "utterance_ids": ["utt_1"],
                           "utterances": [{"utterance_id": "utt_1", "start_ms": 0, "end_ms": 900, "text": "hi",
                                           "final": True}]}  # fmt: skip
    message = stored_dialogue("m1", row)
    assert orjson.loads(message.text) == {"type": "dialogue", "event": "dialogue.update", "meeting_id": "m1", **row}
    assert (message.key, message.order, message.placed_position) == ("whisper:tiny.en/dlg_1", 3, 4)
    assert stored_dialogue("m1", {**row, "placed": False}).placed_position is None
    assert stored_dialogue("m1", {**row, "status": "live", "placed": False}).placed_position is None


def test_a_meeting_deletion_closes_the_socket_and_other_changes_do_not() -> None:
    assert isinstance(ENDED, MeetingChangedV1)
    ended = message_of(ENDED)
    assert ended is not None and ended.close is None
    assert orjson.loads(ended.text)["action"] == "ended"
    deleted = message_of(ENDED.model_copy(update={"change": "deleted", "deleted": True, "title": ""}))
    assert deleted is not None and deleted.close == (4404, "the meeting was deleted")
    assert message_of(ENDED.model_copy(update={"change": "created"})) is None, "sockets open on existing meetings"


# --- resume ----------------------------------------------------------------------------------------


def test_resume_leaves_out_the_placed_dialogues_and_the_chat_the_client_holds() -> None:
    held = resume_point("3", "5000")
    assert held == ResumePoint(placed_held=3, chat_since_ms=5000)
    assert [held.wants(_dialogue(p)) for p in (0, 2, 3, 7)] == [False, False, True, True]
    assert held.wants(_dialogue(0, status="live", placed=False)), "a live box may have changed: it is sent again"
    assert held.wants(_dialogue(1, placed=False)), "final words whose place may still change are sent again"
    assert [held.wants(_chat("a", t)) for t in (4999, 5000, 5001)] == [False, True, True]
    assert ENDED is not None and held.wants(message_of(ENDED))  # type: ignore[arg-type]


def test_no_resume_wants_everything() -> None:
    held = resume_point(None, None)
    assert held == ResumePoint(0, 0)
    assert held.wants(_dialogue(0)) and held.wants(_chat("a", 0))


@pytest.mark.parametrize(
    ("resume", "chat_since_ms", "named"),
    [("-1", None, "resume"), ("1.5", None, "resume"), ("", None, "resume"), ("x", None, "resume"),
     (str(MAX_RESUME + 1), None, "resume"), ("٣", None, "resume"), (None, "soon", "chat_since_ms"),
     (None, "9" * 5000, "chat_since_ms"), ("1", "-5", "chat_since_ms")],
)  # fmt: skip
def test_a_bad_resume_value_is_refused_naming_it(resume: str | None, chat_since_ms: str | None, named: str) -> None:
    with pytest.raises(BadResume, match=f"^{named}: a whole number from 0 to "):
        resume_point(resume, chat_since_ms)


def test_resume_takes_its_largest_values() -> None:
    assert resume_point(str(MAX_RESUME), str(2**62)) == ResumePoint(MAX_RESUME, 2**62)


# --- the hub's memory --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_newest_of_each_thing_is_remembered_in_the_order_of_its_last_change() -> None:
    recent = RecentMessages(window_s=60, clock=Clock())
    meeting = FINAL.meeting_id  # type: ignore[attr-defined]
    first, chat, second = _dialogue(0, "live", 1, "dlg_a"), _chat("msg_1", 1, meeting), _dialogue(1, "live", 1, "dlg_b")
    newer = _dialogue(0, "final", 2, "dlg_a")
    for message in (first, chat, second, newer, first):  # the last: a redelivery of an older revision
        recent.add(message)
    assert recent.recent(meeting) == [chat, second, newer]
    assert recent.recent("another-meeting") == []
    assert recent.size() == 3


def test_messages_leave_the_window_and_empty_meetings_are_dropped() -> None:
    clock = Clock()
    recent = RecentMessages(window_s=60, clock=clock)
    recent.add(_chat("msg_1", 1))
    clock.now += 30
    recent.add(_chat("msg_2", 2))
    clock.now += 31
    assert [m.key for m in recent.recent("m1")] == ["msg_2"], "past the window it is not handed out"
    recent.expire()
    assert recent.size() == 1
    clock.now += 30
    recent.expire()
    assert recent.size() == 0 and recent.recent("m1") == []


def test_a_meeting_keeps_at_most_its_bound_the_oldest_go_first() -> None:
    recent = RecentMessages(window_s=60, max_per_meeting=3, clock=Clock())
    for n in range(5):
        recent.add(_chat(f"msg_{n}", n))
    recent.add(_chat("other", 0, meeting_id="m2"))
    assert [m.key for m in recent.recent("m1")] == ["msg_2", "msg_3", "msg_4"]
    assert [m.key for m in recent.recent("m2")] == ["other"]


def test_forget_drops_a_meeting() -> None:
    recent = RecentMessages(clock=Clock())
    recent.add(_chat("msg_1", 1))
    recent.add(_chat("msg_2", 1, meeting_id="m2"))
    recent.forget("m1")
    assert recent.recent("m1") == [] and recent.size() == 1
