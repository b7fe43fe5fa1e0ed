"""Dialogue rules (merger/processor.py): grouping, statuses, revisions, and order independence."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merger.processor import Utterance, apply, build_dialogues, new_state
from palaver import ids
from palaver.events import (
    DialogueUpdateV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptFinalV1,
    decode,
    encode,
)

MEETING = "m1"
PAUSE = 1500
RATE = 16000


def utt(speaker: str, start_ms: int, end_ms: int, text: str | None = None) -> TranscriptFinalV1:
    stream = ids.stream_id(MEETING, speaker)
    start_sample = start_ms * RATE // 1000
    uid = ids.utterance_id(stream, start_sample)
    return TranscriptFinalV1(
        event_id=ids.event_id("transcript.final", uid, "whisper:tiny.en"),
        utterance_id=uid,
        meeting_id=MEETING,
        speaker_id=speaker,
        stream_id=stream,
        start_ms=start_ms,
        end_ms=end_ms,
        start_sample=start_sample,
        end_sample=end_ms * RATE // 1000,
        sample_rate=RATE,
        text=text if text is not None else f"{speaker}@{start_ms}",
        confidence=0.9,
        language="en",
        engine="whisper",
        model="tiny.en",
        run="whisper:tiny.en",
    )


def stopped(speaker: str) -> StreamStoppedV1:
    stream = ids.stream_id(MEETING, speaker)
    return StreamStoppedV1(
        event_id=ids.event_id("stream.stopped", stream, 1), meeting_id=MEETING, speaker_id=speaker,
        stream_id=stream, stream_start_ms=0, end_sample=1, reason="end",
    )  # fmt: skip


def started(speaker: str) -> StreamStartedV1:
    stream = ids.stream_id(MEETING, speaker)
    return StreamStartedV1(
        event_id=ids.event_id("stream.started", stream, 0), meeting_id=MEETING, speaker_id=speaker,
        stream_id=stream, sample_rate=RATE, stream_start_ms=0,
    )  # fmt: skip


def as_utterance(e: TranscriptFinalV1) -> Utterance:
    return Utterance(e.utterance_id, e.speaker_id, e.start_ms, e.end_ms, e.text, e.run)


def fold(events: Iterable[object], pause_ms: int = PAUSE) -> tuple[dict, list[DialogueUpdateV1]]:  # type: ignore[type-arg]
    state = new_state()
    updates: list[DialogueUpdateV1] = []
    for e in events:
        state, out = apply(MEETING, state, e, pause_ms)  # type: ignore[arg-type]
        updates += out
    return state, updates


def latest(updates: list[DialogueUpdateV1]) -> dict[str, DialogueUpdateV1]:
    out: dict[str, DialogueUpdateV1] = {}
    for u in updates:
        if u.dialogue_id not in out or u.revision > out[u.dialogue_id].revision:
            out[u.dialogue_id] = u
    return out


def final_view(updates: list[DialogueUpdateV1]) -> set[tuple[str, str, int, int, str, str]]:
    return {
        (u.dialogue_id, u.text, u.start_ms, u.end_ms, u.speaker_id, u.status)
        for u in latest(updates).values()
        if u.status != "retracted"
    }


def grouping(events: list[TranscriptFinalV1], pause_ms: int = PAUSE) -> list[tuple[str, list[str], str]]:
    by_id = {e.utterance_id: e.text for e in events}
    return [
        (d.speaker_id, [by_id[u] for u in d.utterance_ids], d.status)
        for d in build_dialogues(MEETING, [as_utterance(e) for e in events], pause_ms)
    ]


# --- build_dialogues -------------------------------------------------------------------------------------


def test_empty_meeting_has_no_dialogues() -> None:
    assert build_dialogues(MEETING, [], PAUSE) == []


def test_same_speaker_consecutive_utterances_join() -> None:
    events = [utt("alice", 0, 1000, "Good morning."), utt("alice", 1500, 3000, "Let's start.")]
    (d,) = build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE)
    assert d.text == "Good morning. Let's start."
    assert (d.start_ms, d.end_ms, d.speaker_id, d.status) == (0, 3000, "alice", "live")
    assert d.utterance_ids == (events[0].utterance_id, events[1].utterance_id)
    assert d.dialogue_id == ids.dialogue_id(MEETING, events[0].utterance_id)
    assert d.run == "whisper:tiny.en"


@pytest.mark.parametrize(("gap", "dialogues"), [(PAUSE - 1, 1), (PAUSE, 1), (PAUSE + 1, 2)])
def test_pause_longer_than_pause_ms_splits(gap: int, dialogues: int) -> None:
    events = [utt("alice", 0, 1000), utt("alice", 1000 + gap, 3000 + gap)]
    result = grouping(events)
    assert len(result) == dialogues
    if dialogues == 2:
        assert [status for _, _, status in result] == ["final", "live"]


def test_pause_is_measured_from_the_latest_end_in_the_group() -> None:
    # the second utterance ends after the third starts: the gap is measured from 5000, not from 1000
    events = [utt("alice", 0, 1000), utt("alice", 500, 5000), utt("alice", 6000, 7000)]
    assert [texts for _, texts, _ in grouping(events)] == [["alice@0", "alice@500", "alice@6000"]]


def test_another_speaker_starting_in_between_splits() -> None:
    events = [utt("alice", 0, 1000), utt("bob", 1200, 1800), utt("alice", 2000, 3000)]
    assert grouping(events) == [
        ("alice", ["alice@0"], "final"),
        ("bob", ["bob@1200"], "final"),
        ("alice", ["alice@2000"], "live"),
    ]


def test_overlapping_speakers_give_concurrent_dialogues() -> None:
    events = [utt("alice", 0, 5000), utt("bob", 1000, 3000)]
    dialogues = build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE)
    assert [(d.speaker_id, d.start_ms, d.end_ms, d.status) for d in dialogues] == [
        ("alice", 0, 5000, "final"),
        ("bob", 1000, 3000, "live"),
    ]
    assert dialogues[0].start_ms < dialogues[1].start_ms < dialogues[1].end_ms < dialogues[0].end_ms


def test_simultaneous_starts_are_ordered_by_speaker() -> None:
    events = [utt("bob", 1000, 2000), utt("alice", 1000, 2500)]
    assert [s for s, _, _ in grouping(events)] == ["alice", "bob"]


def test_stopped_speaker_dialogue_is_final() -> None:
    events = [utt("alice", 0, 1000), utt("bob", 200, 900)]
    dialogues = build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE, {"bob"})
    assert [(d.speaker_id, d.status) for d in dialogues] == [("alice", "final"), ("bob", "final")]


def test_blank_texts_are_skipped_in_dialogue_text() -> None:
    events = [
        utt("alice", 0, 1000, "  Hello "),
        utt("alice", 1100, 1500, "   "),
        utt("alice", 1600, 2000, "there"),
    ]
    (d,) = build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE)
    assert d.text == "Hello there"
    assert len(d.utterance_ids) == 3


# --- apply -----------------------------------------------------------------------------------------------


def test_apply_does_not_mutate_state() -> None:
    state = new_state()
    state, _ = apply(MEETING, state, utt("alice", 0, 1000), PAUSE)
    snapshot = {k: dict(v) if isinstance(v, dict) else list(v) for k, v in state.items()}
    apply(MEETING, state, utt("alice", 1500, 2000), PAUSE)
    apply(MEETING, state, stopped("alice"), PAUSE)
    assert state == snapshot


def test_first_utterance_creates_live_dialogue() -> None:
    e = utt("alice", 0, 1000)
    _, (update,) = fold([e])
    assert update.status == "live"
    assert update.revision == 1
    assert update.position == 0
    assert update.utterance_ids == (e.utterance_id,)
    assert update.event_id == ids.event_id("dialogue.update", update.dialogue_id, update.run, 1)


def test_duplicate_event_produces_no_updates() -> None:
    e = utt("alice", 0, 1000)
    state, _ = fold([e, utt("bob", 2000, 3000)])
    again, updates = apply(MEETING, state, e, PAUSE)
    assert updates == []
    assert again == state
    _, updates = apply(MEETING, state, stopped("carol"), PAUSE)  # nobody's dialogue changes
    assert updates == []


def test_duplicate_stream_stopped_produces_no_updates() -> None:
    state, _ = fold([utt("alice", 0, 1000), stopped("alice")])
    _, updates = apply(MEETING, state, stopped("alice"), PAUSE)
    assert updates == []


def test_stream_stopped_finalizes_speaker_last_dialogue() -> None:
    e = utt("alice", 0, 1000)
    state, _ = fold([e])
    state, (update,) = apply(MEETING, state, stopped("alice"), PAUSE)
    assert update.status == "final"
    assert update.revision == 2
    assert update.dialogue_id == ids.dialogue_id(MEETING, e.utterance_id)
    assert update.text == e.text
    # a reconnect reopens it
    _, (reopened,) = apply(MEETING, state, started("alice"), PAUSE)
    assert (reopened.status, reopened.revision) == ("live", 3)


def test_stream_stopped_leaves_other_speakers_live() -> None:
    state, _ = fold([utt("alice", 0, 1000), utt("bob", 500, 3000)])
    _, updates = apply(MEETING, state, stopped("alice"), PAUSE)
    assert updates == []  # alice's dialogue was already final (bob started after it); bob's stays live


def test_unrelated_events_leave_state_unchanged() -> None:
    state, _ = fold([utt("alice", 0, 1000)])
    update = DialogueUpdateV1(
        event_id="evt_x", dialogue_id="dlg_x", meeting_id=MEETING, speaker_id="alice", start_ms=0, end_ms=1,
        text="", status="live", revision=1, position=0, utterance_ids=(), run="r",
    )  # fmt: skip
    assert apply(MEETING, state, update, PAUSE) == (state, [])


def test_late_earlier_utterance_retracts_the_regrouped_dialogue() -> None:
    first, second = utt("alice", 0, 1000), utt("alice", 1500, 3000)
    state, updates = fold([second, first])
    old_id = ids.dialogue_id(MEETING, second.utterance_id)
    new_id = ids.dialogue_id(MEETING, first.utterance_id)
    view = latest(updates)
    assert view[old_id].status == "retracted"
    assert view[old_id].revision == 2
    assert view[old_id].text == "" and view[old_id].utterance_ids == ()
    assert view[new_id].utterance_ids == (first.utterance_id, second.utterance_id)
    assert view[new_id].status == "live"
    # a retraction is sent once
    _, again = apply(MEETING, state, utt("bob", 9000, 9500), PAUSE)
    assert all(u.dialogue_id != old_id for u in again)


def test_revisions_strictly_increase_per_dialogue_in_a_conversation() -> None:
    events = [
        utt("alice", 0, 1000), utt("alice", 1500, 2500), utt("bob", 2000, 4000), utt("alice", 4200, 5000),
        utt("alice", 5200, 6000), utt("carol", 5500, 5900), stopped("bob"), utt("alice", 900, 1200),
    ]  # fmt: skip
    _, updates = fold(events)
    assert_revisions_increase(updates)


def assert_revisions_increase(updates: list[DialogueUpdateV1]) -> None:
    seen: dict[str, int] = {}
    for u in updates:
        assert u.revision == seen.get(u.dialogue_id, 0) + 1, f"{u.dialogue_id}: gap or repeat"
        seen[u.dialogue_id] = u.revision
        assert u.event_id == ids.event_id("dialogue.update", u.dialogue_id, u.run, u.revision)
        assert decode(encode(u)) == u


# --- order independence ----------------------------------------------------------------------------------

SPEAKERS = ("alice", "bob", "carol")


@st.composite
def meetings(draw: st.DrawFn) -> list[TranscriptFinalV1]:
    """A set of utterances: up to 8 per speaker, non-overlapping within a speaker, any overlap between."""
    events: list[TranscriptFinalV1] = []
    for speaker in draw(st.lists(st.sampled_from(SPEAKERS), min_size=1, max_size=3, unique=True)):
        at = draw(st.integers(0, 3000))
        for _ in range(draw(st.integers(1, 8))):
            length = draw(st.integers(100, 4000))
            events.append(utt(speaker, at, at + length, draw(st.sampled_from(["", "ok", f"{speaker} {at}"]))))
            at += length + draw(st.integers(0, 3 * PAUSE))
    return events


@st.composite
def arrivals(
    draw: st.DrawFn,
) -> tuple[list[TranscriptFinalV1], list[TranscriptFinalV1], list[TranscriptFinalV1]]:
    """The same utterances in two arrival orders, each with duplicates."""
    events = draw(meetings())
    orders = []
    for _ in range(2):
        dupes = draw(st.lists(st.sampled_from(events), max_size=len(events)))
        orders.append(draw(st.permutations(events + dupes)))
    return events, orders[0], orders[1]


@settings(max_examples=150, deadline=None)
@given(arrivals())
def test_any_arrival_order_gives_the_same_dialogues(
    case: tuple[list[TranscriptFinalV1], list[TranscriptFinalV1], list[TranscriptFinalV1]],
) -> None:
    events, order_a, order_b = case
    state_a, updates_a = fold(order_a)
    state_b, updates_b = fold(order_b)
    in_order = fold(sorted(events, key=lambda e: (e.start_ms, e.speaker_id)))[1]
    expected = {
        (d.dialogue_id, d.text, d.start_ms, d.end_ms, d.speaker_id, d.status)
        for d in build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE)
    }
    assert final_view(updates_a) == final_view(updates_b) == final_view(in_order) == expected
    assert state_a["utterances"] == state_b["utterances"]
    assert_revisions_increase(updates_a)
    assert_revisions_increase(updates_b)
    # every utterance sits in exactly one surviving dialogue
    surviving = [u for u in latest(updates_a).values() if u.status != "retracted"]
    assert sorted(uid for u in surviving for uid in u.utterance_ids) == sorted(
        {e.utterance_id for e in events}
    )


@settings(max_examples=100, deadline=None)
@given(meetings(), st.data())
def test_replaying_any_event_again_changes_nothing(
    events: list[TranscriptFinalV1], data: st.DataObject
) -> None:
    state, _ = fold(events)
    again = data.draw(st.sampled_from(events))
    assert apply(MEETING, state, again, PAUSE) == (state, [])


@settings(max_examples=100, deadline=None)
@given(meetings())
def test_dialogue_rules_hold_for_any_meeting(events: list[TranscriptFinalV1]) -> None:
    dialogues = build_dialogues(MEETING, [as_utterance(e) for e in events], PAUSE)
    by_id = {e.utterance_id: e for e in events}
    assert [d.start_ms for d in dialogues] == sorted(d.start_ms for d in dialogues)
    live_per_speaker: dict[str, int] = {}
    for d in dialogues:
        members = [by_id[u] for u in d.utterance_ids]
        assert {m.speaker_id for m in members} == {d.speaker_id}
        assert d.start_ms == members[0].start_ms
        assert d.end_ms == max(m.end_ms for m in members)
        for before, after in itertools.pairwise(members):
            assert after.start_ms - max(m.end_ms for m in members[: members.index(after)]) <= PAUSE
            # nobody else started an utterance in between
            assert not any(
                e.speaker_id != d.speaker_id and before.start_ms <= e.start_ms <= after.start_ms
                and (e.start_ms, e.speaker_id) > (before.start_ms, before.speaker_id)
                and (e.start_ms, e.speaker_id) < (after.start_ms, after.speaker_id)
                for e in events
            )  # fmt: skip
        if d.status == "live":
            live_per_speaker[d.speaker_id] = live_per_speaker.get(d.speaker_id, 0) + 1
    assert all(n == 1 for n in live_per_speaker.values())
    # the dialogue that starts last is always live: nothing can have closed it
    assert dialogues[-1].status == "live"


def test_runs_of_one_meeting_keep_separate_dialogues() -> None:
    original = utt("alice", 0, 1000, "hello there")
    reprocessed = original.model_copy(update={"run": "whisper:small.en", "text": "hello their", "model": "small.en"})
    state, first = apply(MEETING, new_state(), original, PAUSE)
    state, second = apply(MEETING, state, reprocessed, PAUSE)
    assert [(u.run, u.text, u.revision) for u in first] == [("whisper:tiny.en", "hello there", 1)]
    assert [(u.run, u.text, u.revision) for u in second] == [("whisper:small.en", "hello their", 1)]
    assert first[0].event_id != second[0].event_id
    _, after_stop = apply(MEETING, state, stopped("alice"), PAUSE)
    assert sorted((u.run, u.status) for u in after_stop) == [("whisper:small.en", "final"), ("whisper:tiny.en", "final")]
