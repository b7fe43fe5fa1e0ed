"""Dialogue rules (merger/processor.py): grouping, partials, the watermark, revisions, order independence."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from merger.processor import ALL_STOPPED, apply, conflate, group, new_state
from palaver import ids
from palaver.events import (
    DialogueUpdateV1,
    MeetingWatermarkV1,
    StreamProgressV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptFinalV1,
    TranscriptPartialV1,
    decode,
    encode,
)
from palaver.events.base import EventV

MEETING = "m1"
PAUSE = 1500
RATE = 16000
RUN = "whisper:tiny.en"


def final(speaker: str, start_ms: int, end_ms: int, text: str | None = None, run: str = RUN) -> TranscriptFinalV1:
    stream = ids.stream_id(MEETING, speaker)
    uid = ids.utterance_id(stream, start_ms * RATE // 1000)
    return TranscriptFinalV1(
        event_id=ids.event_id("transcript.final", uid, run), utterance_id=uid, meeting_id=MEETING,
        speaker_id=speaker, stream_id=stream, start_ms=start_ms, end_ms=end_ms,
        start_sample=start_ms * RATE // 1000, end_sample=end_ms * RATE // 1000, sample_rate=RATE,
        text=text if text is not None else f"{speaker}@{start_ms}", confidence=0.9, language="en",
        engine=run.split(":")[0], model=run.split(":")[1], run=run,
    )  # fmt: skip


def partial(speaker: str, start_ms: int, end_ms: int, stable: str, unstable: str, seq: int) -> TranscriptPartialV1:
    stream = ids.stream_id(MEETING, speaker)
    uid = ids.utterance_id(stream, start_ms * RATE // 1000)
    return TranscriptPartialV1(
        event_id=ids.event_id("transcript.partial", uid, RUN, seq), utterance_id=uid, meeting_id=MEETING,
        speaker_id=speaker, stream_id=stream, start_ms=start_ms, end_ms=end_ms, stable_text=stable,
        unstable_text=unstable, sequence=seq, language="en", engine="whisper", model="tiny.en", run=RUN,
    )  # fmt: skip


def started(speaker: str, at_ms: int = 0, run: str = RUN) -> StreamStartedV1:
    stream = ids.stream_id(MEETING, speaker)
    return StreamStartedV1(event_id=ids.event_id("stream.started", stream, 0), meeting_id=MEETING,
                           speaker_id=speaker, stream_id=stream, sample_rate=RATE, stream_start_ms=at_ms,
                           run=run)  # fmt: skip


def stopped(speaker: str, run: str = RUN, at_ms: int = 0) -> StreamStoppedV1:
    stream = ids.stream_id(MEETING, speaker)
    return StreamStoppedV1(event_id=ids.event_id("stream.stopped", stream, at_ms), meeting_id=MEETING,
                           speaker_id=speaker, stream_id=stream, stream_start_ms=0,
                           end_sample=at_ms * RATE // 1000, reason="end", run=run)  # fmt: skip


def progress(speaker: str, settled_ms: int) -> StreamProgressV1:
    stream = ids.stream_id(MEETING, speaker)
    return StreamProgressV1(event_id=ids.event_id("stream.progress", stream, settled_ms), meeting_id=MEETING,
                            speaker_id=speaker, stream_id=stream, settled_ms=settled_ms, run=RUN)  # fmt: skip


def fold(events: list[EventV], state: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
    state = state or new_state()
    out: list[Any] = []
    for event in events:
        state, published = apply(MEETING, state, event, PAUSE)
        out.extend(published)
    return state, out


def latest(out: list[Any]) -> dict[str, DialogueUpdateV1]:
    """What a reader keeps: the highest revision per dialogue, retracted ones dropped."""
    best: dict[str, DialogueUpdateV1] = {}
    for u in out:
        if isinstance(u, DialogueUpdateV1) and (u.dialogue_id not in best or u.revision > best[u.dialogue_id].revision):
            best[u.dialogue_id] = u
    return {k: v for k, v in best.items() if v.status != "retracted"}


def summary(out: list[Any]) -> list[tuple[str, int, int, str, str]]:
    return sorted((d.speaker_id, d.start_ms, d.end_ms, d.text, d.status) for d in latest(out).values())


# -- grouping ------------------------------------------------------------------------------------

def test_same_speaker_consecutive_utterances_join() -> None:
    _, out = fold([started("a"), final("a", 0, 1000), final("a", 1500, 2500), stopped("a")])
    assert summary(out) == [("a", 0, 2500, "a@0 a@1500", "final")]


def test_pause_longer_than_limit_splits() -> None:
    _, out = fold([started("a"), final("a", 0, 1000), final("a", 1000 + PAUSE + 1, 4000), stopped("a")])
    assert [d[1] for d in summary(out)] == [0, 2501]


def test_another_speaker_starting_in_between_splits() -> None:
    events = [started("a"), started("b"), final("a", 0, 1000), final("b", 1100, 1400), final("a", 1500, 2500),
              stopped("a"), stopped("b")]  # fmt: skip
    assert [(d[0], d[1]) for d in summary(fold(events)[1])] == [("a", 0), ("a", 1500), ("b", 1100)]


def test_overlapping_speakers_update_concurrent_live_boxes() -> None:
    events = [
        started("a"), started("b"),
        partial("a", 0, 800, "let us", "start", 1),
        partial("b", 500, 900, "", "I think", 1),
        partial("a", 0, 1600, "let us start", "now", 2),
        partial("b", 500, 1700, "I think", "so", 2),
    ]  # fmt: skip
    _, out = fold(events)
    updates = [u for u in out if isinstance(u, DialogueUpdateV1)]
    assert [(u.speaker_id, u.status) for u in updates] == [("a", "live"), ("b", "live"), ("a", "live"), ("b", "live")]
    boxes = latest(out)
    assert sorted(d.text for d in boxes.values()) == ["I think so", "let us start now"]
    assert len({u.dialogue_id for u in updates}) == 2, "each box updates in place"


def test_final_replaces_partial_and_live_text_is_finals_then_partial() -> None:
    events = [started("a"), final("a", 0, 1000, "hello all"), partial("a", 1200, 1800, "we", "begin", 1)]
    _, out = fold(events)
    assert [d.text for d in latest(out).values()] == ["hello all we begin"]
    _, more = fold([final("a", 1200, 2000, "we begin now")], fold(events)[0])
    assert [d.text for d in latest(more).values()] == ["hello all we begin now"]


def test_partials_out_of_sequence_are_ignored() -> None:
    state, _ = fold([started("a"), partial("a", 0, 900, "one two", "three", 2)])
    _, out = fold([partial("a", 0, 500, "one", "", 1)], state)
    assert out == []


# -- utterances: settled words and the tentative tail -------------------------------------------

def _utterances(update: DialogueUpdateV1) -> list[tuple[int, int, str, bool]]:
    return [(u.start_ms, u.end_ms, u.text, u.final) for u in update.utterances]


def test_each_revision_carries_its_utterances_finals_settled_and_the_partial_tentative() -> None:
    state, out = fold([started("a"), final("a", 0, 1000, " hello all "), partial("a", 1200, 1800, "we", "begin", 1)])
    (box,) = latest(out).values()
    assert _utterances(box) == [(0, 1000, "hello all", True), (1200, 1800, "we begin", False)]
    assert tuple(u.utterance_id for u in box.utterances) == box.utterance_ids
    assert box.text == " ".join(u.text for u in box.utterances)
    _, more = fold([final("a", 1200, 2000, "we begin now")], state)
    (box,) = latest(out + more).values()
    assert _utterances(box) == [(0, 1000, "hello all", True), (1200, 2000, "we begin now", True)]


def test_a_partial_turning_final_with_the_same_words_and_times_is_a_new_revision() -> None:
    """The reader draws the words settled now: nothing else of the box changed, yet it must be told."""
    state, out = fold([started("a"), partial("a", 0, 1000, "hello", "there", 1)])
    (first,) = [u for u in out if isinstance(u, DialogueUpdateV1)]
    _, out = fold([final("a", 0, 1000, "hello there")], state)
    (second,) = [u for u in out if isinstance(u, DialogueUpdateV1)]
    assert (second.dialogue_id, second.revision) == (first.dialogue_id, first.revision + 1)
    assert (second.text, second.start_ms, second.end_ms) == (first.text, first.start_ms, first.end_ms)
    assert [u.final for u in first.utterances] == [False] and [u.final for u in second.utterances] == [True]


def test_a_partial_growing_only_in_time_is_a_new_revision() -> None:
    state, _ = fold([started("a"), final("a", 0, 1000, "one"), partial("a", 1200, 1500, "two", "", 1)])
    _, out = fold([partial("a", 1200, 1900, "two", "", 2)], state)
    (update,) = [u for u in out if isinstance(u, DialogueUpdateV1)]
    assert _utterances(update)[-1] == (1200, 1900, "two", False)


def test_whitespace_the_reader_never_sees_makes_no_revision() -> None:
    state, _ = fold([started("a"), partial("a", 0, 900, "one two", "", 1)])
    _, out = fold([partial("a", 0, 900, "one two ", " ", 2)], state)
    assert out == []


def test_a_retraction_carries_no_utterances() -> None:
    state, _ = fold([started("a"), started("b"), partial("b", 1000, 1500, "", "hm", 1)])
    _, out = fold([final("b", 1100, 1800, "hmm right")], state)
    (retraction,) = [u for u in out if isinstance(u, DialogueUpdateV1) and u.status == "retracted"]
    assert (retraction.utterance_ids, retraction.utterances) == ((), ())


def test_final_dialogues_carry_their_utterances_all_final() -> None:
    state, _ = fold([started("a"), started("b"), final("a", 0, 1000), final("a", 1500, 2500)])
    _, out2 = fold([final("b", 1200, 1400), stopped("a"), stopped("b")], state)
    updates = [u for u in out2 if isinstance(u, DialogueUpdateV1)]
    finals = {u.dialogue_id: u for u in updates if u.status == "final"}
    assert sorted(_utterances(u)[0][:3] for u in finals.values()) == [
        (0, 1000, "a@0"), (1200, 1400, "b@1200"), (1500, 2500, "a@1500")]  # fmt: skip
    assert all(u.final for d in finals.values() for u in d.utterances), "a final dialogue holds finals only"


# -- watermark and finality ---------------------------------------------------------------------

def test_dialogue_stays_live_until_every_active_stream_settles_past_it() -> None:
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), final("b", 2000, 3000)])
    assert {d.speaker_id: d.status for d in latest(out).values()} == {"a": "live", "b": "live"}
    # b has spoken after a, but a's stream could still produce an utterance before 2000 ms.
    state, out = fold([progress("a", 2500)], state)
    assert [(u.speaker_id, u.status) for u in out if isinstance(u, DialogueUpdateV1)] == [("a", "final")]
    marks = [u for u in out if isinstance(u, MeetingWatermarkV1)]
    assert [(m.watermark_ms, m.final_dialogues) for m in marks] == [(2500, 1)]


def test_silence_past_the_pause_limit_finalizes() -> None:
    state, out = fold([started("a"), final("a", 0, 1000), progress("a", 1000 + PAUSE)])
    assert [d.status for d in latest(out).values()] == ["live"]
    _, out = fold([progress("a", 1000 + PAUSE + 1)], state)
    assert [u.status for u in out if isinstance(u, DialogueUpdateV1)] == ["final"]


def test_all_streams_stopped_finalizes_everything_and_state_is_emptied() -> None:
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), final("b", 200, 900),
                       stopped("a"), stopped("b")])  # fmt: skip
    assert all(d.status == "final" for d in latest(out).values())
    run = state["runs"][RUN]
    assert run["utts"] == [] and run["emitted"] == {} and run["final_count"] == 2
    assert run["watermark"] == ALL_STOPPED


# -- final words before the watermark ------------------------------------------------------------

def _updates(out: list[Any]) -> list[DialogueUpdateV1]:
    return [u for u in out if isinstance(u, DialogueUpdateV1)]


def test_a_box_is_final_once_its_speaker_is_past_it_though_a_slow_stream_holds_the_watermark() -> None:
    state, out = fold([started("a"), started("b"), progress("b", 500), final("a", 0, 1000),
                       progress("a", 1000 + PAUSE + 1)])  # fmt: skip
    (box,) = latest(out).values()
    assert (box.status, box.placed, box.position) == ("final", False, 0)
    assert not [u for u in out if isinstance(u, MeetingWatermarkV1)], "the watermark is still at b's 500 ms"
    _, out = fold([progress("b", 1000 + PAUSE + 1)], state)
    (placed,) = _updates(out)
    assert (placed.status, placed.placed, placed.revision) == ("final", True, box.revision + 1)
    assert _words(placed) == _words(box)


def test_words_wait_until_no_other_speaker_can_start_among_them() -> None:
    # b is settled at 1100 ms: an utterance of b could still start at 1100-1199 and split a's box.
    state, out = fold([started("a"), started("b"), progress("b", 1100), final("a", 0, 1000), final("a", 1200, 2000),
                       progress("a", 2000 + PAUSE + 1)])  # fmt: skip
    assert [(d.text, d.status) for d in latest(out).values()] == [("a@0 a@1200", "live")]
    _, out = fold([progress("b", 1201)], state)
    assert [(u.text, u.status, u.placed) for u in _updates(out)] == [("a@0 a@1200", "final", False)]


def test_an_utterance_starting_with_the_boxs_last_may_still_split_it() -> None:
    # a is settled at 1200 ms: an utterance of a starting at 1200 ms sorts before b's (ties go by speaker).
    state, out = fold([started("a"), started("b"), progress("a", 1200), final("b", 0, 1000), final("b", 1200, 2000),
                       progress("b", 2000 + PAUSE + 1)])  # fmt: skip
    assert [(d.text, d.status) for d in latest(out).values()] == [("b@0 b@1200", "live")]
    _, more = fold([final("a", 1200, 1300)], state)
    assert sorted(d.text for d in latest(out + more).values()) == ["a@1200", "b@0", "b@1200"]
    _assert_final_words_never_change(out + more)


def test_a_quiet_speakers_line_is_final_once_its_speaker_is_past_the_pause_while_others_talk_on() -> None:
    """One utterance, its speaker silent before it: nothing another speaker says can split it or join it
    to an earlier box, so it does not wait for b's sentence, open since before it, to end."""
    state, out = fold([started("a"), started("b"), partial("b", 0, 2500, "", "and so on", 0), final("a", 1000, 2000),
                       progress("a", 2000 + PAUSE)])  # fmt: skip
    assert {d.speaker_id: d.status for d in latest(out).values()} == {"a": "live", "b": "live"}
    state, out = fold([progress("a", 2000 + PAUSE + 1)], state)
    assert [(u.speaker_id, u.text, u.status, u.placed) for u in _updates(out)] == [("a", "a@1000", "final", False)]
    # b's sentence ends however it does (its final may start later than its partial): a's words stay.
    _, more = fold([final("b", 1500, 4000), progress("b", 6000)], state)
    assert [(u.text, u.status, u.placed) for u in _updates(more) if u.speaker_id == "a"] == [("a@1000", "final", True)]
    _assert_final_words_never_change(out + more)


def test_a_one_utterance_box_near_its_speakers_earlier_one_waits_for_the_others() -> None:
    """b's partial between a's two utterances may end without a final: a's utterances then join."""
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), partial("b", 1100, 1300, "", "hm", 0),
                       final("a", 1500, 2500), progress("a", 2500 + PAUSE + 1)])  # fmt: skip
    assert [(d.text, d.status) for d in sorted(latest(out).values(), key=lambda d: d.start_ms)] == [
        ("a@0", "live"), ("hm", "live"), ("a@1500", "live")]  # fmt: skip
    _, more = fold([progress("b", 1600)], state)
    assert [(d.text, d.status) for d in latest(out + more).values()] == [("a@0 a@1500", "final")]
    _assert_final_words_never_change(out + more)


def test_a_quiet_speakers_box_of_two_utterances_still_waits_for_the_others() -> None:
    """Another speaker's next utterance may still start between its two utterances."""
    state, out = fold([started("a"), started("b"), partial("b", 0, 1200, "", "well", 0), final("a", 1000, 2000),
                       final("a", 2300, 3000), progress("a", 3000 + PAUSE + 1), final("b", 0, 2100)])  # fmt: skip
    assert [(d.text, d.status) for d in latest(out).values() if d.speaker_id == "a"] == [("a@1000 a@2300", "live")]
    _, more = fold([progress("b", 2301)], state)
    assert [(u.text, u.status) for u in _updates(more) if u.speaker_id == "a"] == [("a@1000 a@2300", "final")]


def test_a_box_ending_with_its_speakers_open_partial_stays_live() -> None:
    _, out = fold([started("a"), final("a", 0, 1000), partial("a", 1200, 1500, "", "and", 0)])
    assert [(d.text, d.status) for d in latest(out).values()] == [("a@0 and", "live")]


def test_the_speakers_next_utterance_may_join_until_the_speaker_is_past_the_pause() -> None:
    state, out = fold([started("a"), started("b"), progress("b", 9000), final("a", 0, 1000), progress("a", 2000)])
    assert [d.status for d in latest(out).values()] == ["live"]
    state, out = fold([final("a", 1000 + PAUSE, 3000)], state)
    assert [(u.text, u.status) for u in _updates(out)] == [("a@0 a@2500", "live")]
    state, out = fold([progress("a", 3000 + PAUSE)], state)
    assert out == []
    _, out = fold([progress("a", 3000 + PAUSE + 1)], state)
    assert [(u.text, u.status) for u in _updates(out)] == [("a@0 a@2500", "final")]


def test_another_speakers_final_after_the_box_closes_it_before_the_pause() -> None:
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), final("b", 1100, 1500), progress("a", 1100)])
    assert {d.speaker_id: d.status for d in latest(out).values()} == {"a": "live", "b": "live"}
    _, out = fold([progress("a", 1101)], state)
    assert [(u.speaker_id, u.status, u.placed) for u in _updates(out)] == [("a", "final", True)]


def test_another_speakers_partial_does_not_close_a_box() -> None:
    """The partial may end with a final that starts later: the speaker's next utterance then joins."""
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), partial("b", 1100, 1400, "", "hm", 0),
                       progress("a", 1200)])  # fmt: skip
    assert {d.speaker_id: d.status for d in latest(out).values()} == {"a": "live", "b": "live"}
    _, more = fold([final("b", 1300, 1600), final("a", 1250, 2000)], state)
    assert ("a", "a@0 a@1250") in [(d.speaker_id, d.text) for d in latest(out + more).values()]


def test_a_final_box_that_moves_gets_a_new_final_revision_with_its_new_position() -> None:
    # b joins late (its stream.started reaches the merger after a's box became final) and spoke before it.
    state, out = fold([started("a"), started("c"), progress("c", 5500), final("a", 5000, 6000),
                       progress("a", 6000 + PAUSE + 1)])  # fmt: skip
    (box,) = latest(out).values()
    assert (box.status, box.placed, box.position) == ("final", False, 0)
    state, more = fold([started("b"), final("b", 1000, 2000)], state)
    moved = [u for u in _updates(more) if u.dialogue_id == box.dialogue_id]
    assert [(u.status, u.placed, u.position, u.revision) for u in moved] == [("final", False, 1, box.revision + 1)]
    assert _words(moved[0]) == _words(box)
    _, end = fold([stopped("a", at_ms=9000), stopped("b", at_ms=9000), stopped("c", at_ms=9000)], state)
    placed = {d.speaker_id: d.position for d in latest(out + more + end).values() if d.placed}
    assert placed == {"b": 0, "a": 1}


def test_a_late_stream_cannot_split_final_words() -> None:
    """A stream whose start reaches the merger after a box's words became final, with an utterance among
    them: the utterance goes right after the box's last utterance start, and is kept."""
    state, out = fold([started("a"), started("c"), progress("c", 1600), final("a", 0, 1000), final("a", 1500, 2500),
                       progress("a", 2500 + PAUSE + 1)])  # fmt: skip
    (box,) = latest(out).values()
    assert (box.text, box.status) == ("a@0 a@1500", "final")
    state, more = fold([started("b"), final("b", 1100, 1400)], state)
    _, end = fold([stopped("a", at_ms=5000), stopped("b", at_ms=5000), stopped("c", at_ms=5000)], state)
    _assert_final_words_never_change(out + more + end)
    boxes = sorted((d.position, d.speaker_id, d.text, d.start_ms) for d in latest(out + more + end).values())
    assert boxes == [(0, "a", "a@0 a@1500", 0), (1, "b", "b@1100", 1501)]


def test_a_partial_its_stream_passed_without_a_final_is_dropped() -> None:
    """Nothing was said after all: the partial's box goes, and a's boxes on either side of it join."""
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), partial("b", 1100, 1300, "", "hm", 0),
                       final("a", 1400, 2000)])  # fmt: skip
    assert sorted(d.speaker_id for d in latest(out).values()) == ["a", "a", "b"]
    _, more = fold([progress("b", 2500)], state)
    assert [(d.speaker_id, d.text) for d in latest(out + more).values()] == [("a", "a@0 a@1400")]


def test_an_event_before_a_stopped_streams_end_is_a_redelivery() -> None:
    state, _ = fold([started("a"), started("b"), final("a", 0, 1000), stopped("a", at_ms=3000)])
    assert fold([final("a", 2000, 2500)], state)[1] == []


def test_final_positions_follow_media_order() -> None:
    events = [started("a"), started("b"), final("b", 500, 900), final("a", 0, 1000), final("a", 3000, 3500),
              stopped("a"), stopped("b")]  # fmt: skip
    _, out = fold(events)
    finals = sorted(latest(out).values(), key=lambda d: d.position)
    assert [(d.position, d.speaker_id, d.start_ms) for d in finals] == [(0, "a", 0), (1, "b", 500), (2, "a", 3000)]


def test_redelivered_events_change_nothing() -> None:
    events = [started("a"), final("a", 0, 1000), partial("a", 1500, 2000, "x", "y", 1)]
    state, _ = fold(events)
    before = copy.deepcopy(state)
    for event in events:
        again, published = apply(MEETING, state, event, PAUSE)
        assert published == [] and again is state, "nothing to publish, and the state itself back"
    assert state == before, "apply does not mutate the state it is given"


def test_late_event_regroups_and_retracts() -> None:
    # b's utterance arrives after a's two utterances were joined: it splits them, retracting nothing but
    # revising the first dialogue and creating a new one for a's second utterance.
    state, out = fold([started("a"), started("b"), final("a", 0, 1000), final("a", 1500, 2500)])
    assert [d.text for d in latest(out).values()] == ["a@0 a@1500"]
    _, out2 = fold([final("b", 1200, 1400)], state)
    texts = sorted((d.speaker_id, d.text) for d in latest(out + out2).values())
    assert texts == [("a", "a@0"), ("a", "a@1500"), ("b", "b@1200")]


def test_an_utterance_before_its_streams_settled_time_is_a_redelivery() -> None:
    state, _ = fold([started("a"), started("b"), final("b", 0, 500), final("a", 1000, 2000)])
    # a's stream is settled at 2000 ms: its events arrive in order, so one at 600 ms was seen before.
    assert fold([final("a", 600, 900)], state)[1] == []


def test_a_dialogue_back_after_its_retraction_goes_on_with_its_revisions() -> None:
    """c's partial splits b's box, its stop joins it again, a's utterance splits it again: b's second box
    comes back with a revision above its retraction, so readers keeping the highest revision keep it."""
    _, out = fold([started("a"), started("b"), started("c"), final("b", 0, 200), final("b", 201, 401),
                   partial("c", 0, 66, "", "p", 0), stopped("c", at_ms=500), final("a", 201, 300)])  # fmt: skip
    second = ids.dialogue_id(MEETING, final("b", 201, 401).utterance_id)
    history = [(u.revision, u.status) for u in _updates(out) if u.dialogue_id == second]
    assert history == [(1, "live"), (2, "retracted"), (3, "live")]
    assert second in latest(out)


def test_retraction_when_a_late_utterance_becomes_a_dialogues_first() -> None:
    # b's partial placed b's box at 1000; a's final at 900 arrives later and ... b keeps its id, but when
    # a partial's utterance is superseded by a final with another start, the old box is retracted.
    state, out = fold([started("a"), started("b"), partial("b", 1000, 1500, "", "hm", 1)])
    (box,) = latest(out).values()
    _, out2 = fold([final("b", 1100, 1800, "hmm right")], state)
    kinds = [(u.dialogue_id == box.dialogue_id, u.status) for u in out2 if isinstance(u, DialogueUpdateV1)]
    assert (True, "retracted") in kinds and (False, "live") in kinds


def test_runs_of_one_meeting_keep_separate_dialogues() -> None:
    original = final("alice", 0, 1000, "hello there")
    other = final("alice", 0, 1000, "hello their", run="whisper:small.en")
    state, first = fold([started("alice"), original])
    state, second = fold([started("alice", run="whisper:small.en"), other], state)
    assert [(u.run, u.text, u.revision) for u in first] == [(RUN, "hello there", 1)]
    assert [(u.run, u.text, u.revision) for u in second] == [("whisper:small.en", "hello their", 1)]
    assert first[0].event_id != second[0].event_id
    _, after = fold([stopped("alice"), stopped("alice", run="whisper:small.en")], state)
    assert sorted((u.run, u.status) for u in after if isinstance(u, DialogueUpdateV1)) == [
        ("whisper:small.en", "final"), (RUN, "final")]  # fmt: skip


def test_a_state_saved_before_final_words_goes_on() -> None:
    """A run state written by a merger from before final words (no ``sealed``, no ``retracted``) merges on
    to the same dialogues."""
    events = [started("a"), started("b"), final("a", 0, 1000), final("b", 1100, 1500), partial("a", 1600, 1800, "", "x", 0)]
    rest = [final("a", 1600, 2000), progress("a", 4000), progress("b", 4000), stopped("a", at_ms=4000),
            stopped("b", at_ms=4000)]  # fmt: skip
    state, before = fold(events)
    old = copy.deepcopy(state)
    for run in old["runs"].values():
        assert not run["sealed"] and not run["retracted"], "nothing final yet, nothing retracted"
        del run["sealed"], run["retracted"]
    _, after_old = fold(rest, old)
    _, after_new = fold(rest, state)
    assert after_old == after_new and summary(before + after_old) == summary(fold(events + rest)[1])


def test_events_round_trip_through_the_codec_before_the_merger() -> None:
    events = [started("a"), final("a", 0, 1000), stopped("a")]
    _, direct = fold(events)
    _, decoded = fold([decode(encode(e)) for e in events])
    assert direct == decoded


# -- order independence (property) -------------------------------------------------------------

@st.composite
def meetings(draw: st.DrawFn) -> dict[str, list[EventV]]:
    """Per stream, in the order its STT worker would produce them: started, partials and finals of
    non-overlapping utterances, progress in silences, stopped."""
    speakers = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    streams: dict[str, list[EventV]] = {}
    for speaker in speakers:
        events: list[EventV] = [started(speaker)]
        t = draw(st.integers(0, 3000))
        for _ in range(draw(st.integers(0, 5))):
            duration = draw(st.integers(200, 4000))
            for seq in range(draw(st.integers(0, 2))):
                events.append(partial(speaker, t, t + duration * (seq + 1) // 3, "p", str(seq), seq))
            events.append(final(speaker, t, t + duration))
            gap = draw(st.integers(700, 5000))
            if draw(st.booleans()):
                events.append(progress(speaker, t + duration + gap // 2))
            t += duration + gap
        events.append(stopped(speaker, at_ms=t))
        streams[speaker] = events
    return streams


def arrival(streams: dict[str, list[EventV]], seed: int, duplicates: int) -> list[EventV]:
    """A random interleaving that keeps each stream's order, with redeliveries of earlier events."""
    rng = random.Random(seed)
    queues = {s: list(e) for s, e in streams.items()}
    out: list[EventV] = []
    # Every stream has started before any transcript arrives (the meeting's roster is known).
    for s in queues:
        out.append(queues[s].pop(0))
    while any(queues.values()):
        s = rng.choice([k for k, q in queues.items() if q])
        out.append(queues[s].pop(0))
        if duplicates and rng.random() < 0.3:
            out.append(rng.choice(out))
            duplicates -= 1
    return out


@st.composite
def rough_meetings(draw: st.DrawFn) -> dict[str, list[EventV]]:
    """As ``meetings``, with more of what engines do: a final that starts later than its partials (a
    streaming engine; so another utterance id), partials whose utterance ends without a final (nothing was
    said: the stream's next progress, utterance or stop passes them), pauses within the pause limit."""
    speakers = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    streams: dict[str, list[EventV]] = {}
    for speaker in speakers:
        events: list[EventV] = [started(speaker)]
        t = draw(st.integers(0, 3000))
        for _ in range(draw(st.integers(0, 6))):
            duration = draw(st.integers(200, 4000))
            kind = draw(st.sampled_from(("final", "final", "later", "dropped")))
            for seq in range(draw(st.integers(1 if kind == "dropped" else 0, 2))):
                events.append(partial(speaker, t, t + duration * (seq + 1) // 3, "p", str(seq), seq))
            if kind == "final":
                events.append(final(speaker, t, t + duration))
            elif kind == "later":
                events.append(final(speaker, t + draw(st.integers(1, duration // 2)), t + duration))
            gap = draw(st.integers(1, 5000))
            if draw(st.booleans()):
                events.append(progress(speaker, t + duration + gap // 2))
            t += duration + gap
        events.append(stopped(speaker, at_ms=t))
        streams[speaker] = events
    return streams


def late_arrival(streams: dict[str, list[EventV]], seed: int, duplicates: int) -> list[EventV]:
    """As ``arrival``, but some streams reach the merger only after a number of the others' events, start
    included, as when their STT worker lags (their events still in their order)."""
    rng = random.Random(seed)
    queues = {s: list(e) for s, e in streams.items()}
    others = sum(len(q) for q in queues.values())
    held = {s: rng.choice((0, rng.randrange(others + 1))) for s in queues}  # events to wait for
    if "z" in held:  # late_joiner_meetings' late stream
        held["z"] = rng.randrange(others + 1)
    out: list[EventV] = []
    while any(queues.values()):
        ready = [k for k, q in queues.items() if q and held[k] <= len(out)]
        s = rng.choice(ready or [k for k, q in queues.items() if q])
        out.append(queues[s].pop(0))
        if duplicates and rng.random() < 0.3:
            out.append(rng.choice(out))
            duplicates -= 1
    return out


@st.composite
def late_joiner_meetings(draw: st.DrawFn) -> dict[str, list[EventV]]:
    """A talker ("a": turns of several utterances), a listener ("b": progress just past each of a's
    utterance starts, so it lets a's words become final but holds the watermark) and a stream that joins
    late ("z": utterances that start among a's first turn's, and later). Meant for ``late_arrival``,
    which holds "z" back."""
    streams: dict[str, list[EventV]] = {"a": [started("a")], "b": [started("b")], "z": [started("z")]}
    t, turns = 0, []
    for turn in range(draw(st.integers(1, 4))):
        first = t
        for _ in range(draw(st.integers(2 if turn == 0 else 1, 4))):
            duration = draw(st.integers(200, 2000))
            streams["a"].append(final("a", t, t + duration))
            streams["b"].append(progress("b", t + 1))
            last = t
            t += duration + draw(st.integers(1, PAUSE))
        turns.append((first, last))
        t += PAUSE
        streams["a"].append(progress("a", t))
    streams["a"].append(stopped("a", at_ms=t))
    streams["b"].append(stopped("b", at_ms=t + 1000))
    z = draw(st.integers(turns[0][0] + 1, turns[0][1] - 1)) if turns[0][1] - turns[0][0] > 1 else 0
    for _ in range(draw(st.integers(1, 4))):
        duration = draw(st.integers(50, 1500))
        streams["z"].append(final("z", z, z + duration))
        z += duration + draw(st.integers(1, 3000))
    streams["z"].append(stopped("z", at_ms=z))
    return streams


def _offline(streams: dict[str, list[EventV]]) -> list[Any]:
    """The meeting's dialogues grouped offline from all its finals."""
    finals = sorted(
        ([e.start_ms, e.speaker_id, e.utterance_id, e.end_ms, e.text, False, e.stream_id]
         for events in streams.values() for e in events if isinstance(e, TranscriptFinalV1)),
        key=lambda u: (u[0], u[1], u[2]),
    )  # fmt: skip
    return group(MEETING, finals, PAUSE)


def _first_final_words(out: list[Any]) -> list[tuple[Any, ...]]:
    """Each dialogue's words as its first final revision showed them."""
    first: dict[str, DialogueUpdateV1] = {}
    for u in _updates(out):
        if u.status == "final":
            first.setdefault(u.dialogue_id, u)
    return sorted((u.speaker_id, u.start_ms, u.end_ms, u.text, u.utterance_ids) for u in first.values())


@settings(max_examples=150, deadline=None)
@given(st.one_of(meetings(), rough_meetings()), st.integers(0, 10**6), st.integers(0, 8))
def test_once_final_every_later_revision_is_final_with_the_same_words(
    streams: dict[str, list[EventV]], seed: int, duplicates: int
) -> None:
    _, out = fold(arrival(streams, seed, duplicates))
    _assert_final_words_never_change(out)


@settings(max_examples=150, deadline=None)
@given(st.one_of(meetings(), rough_meetings()), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 8))
def test_final_dialogues_and_their_words_are_the_same_for_any_arrival_order(
    streams: dict[str, list[EventV]], seed_a: int, seed_b: int, duplicates: int
) -> None:
    """Whenever a dialogue became final, it is one of the meeting's dialogues grouped offline, words and
    all; and at the end they are all there, placed in media order."""
    offline = sorted((d.speaker_id, d.start_ms, d.end_ms, d.text, d.utterance_ids) for d in _offline(streams))
    for seed, dups in ((seed_a, 0), (seed_b, duplicates)):
        _, out = fold(arrival(streams, seed, dups))
        assert _first_final_words(out) == offline
        placed = sorted((d.position, d.start_ms, d.speaker_id) for d in latest(out).values() if d.placed)
        assert [p for p, _, _ in placed] == list(range(len(offline)))
        assert [(start, speaker) for _, start, speaker in placed] == [(d.start_ms, d.speaker_id) for d in _offline(streams)]


@settings(max_examples=150, deadline=None)
@given(st.one_of(meetings(), rough_meetings()), st.integers(0, 10**6), st.integers(0, 8))
def test_streams_that_start_late_never_change_final_words_and_lose_nothing(
    streams: dict[str, list[EventV]], seed: int, duplicates: int
) -> None:
    _assert_late_streams_change_no_final_words(streams, late_arrival(streams, seed, duplicates))


@settings(max_examples=200, deadline=None)
@given(late_joiner_meetings(), st.integers(0, 10**6), st.integers(0, 8))
def test_a_stream_that_joins_among_final_words_is_kept_out_of_them(
    streams: dict[str, list[EventV]], seed: int, duplicates: int
) -> None:
    # a's words become final as b passes each utterance start, and z comes in among b's events.
    rest = late_arrival({"b": streams["b"][1:], "z": streams["z"]}, seed, duplicates)
    _assert_late_streams_change_no_final_words(streams, streams["b"][:1] + streams["a"] + rest)


def _assert_late_streams_change_no_final_words(streams: dict[str, list[EventV]], events: list[EventV]) -> None:
    _, out = fold(events)
    _assert_final_words_never_change(out)
    boxes = latest(out).values()
    assert all(d.placed for d in boxes), "every stream stopped: everything is placed"
    assert sorted(d.position for d in boxes) == list(range(len(boxes)))
    said = sorted(e.utterance_id for produced in streams.values() for e in produced if isinstance(e, TranscriptFinalV1))
    assert sorted(uid for d in boxes for uid in d.utterance_ids) == said, "every final in one dialogue, once"


@settings(max_examples=150, deadline=None)
@given(meetings(), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 8))
def test_any_arrival_order_and_duplication_gives_the_same_final_dialogues(
    streams: dict[str, list[EventV]], seed_a: int, seed_b: int, duplicates: int
) -> None:
    _, out_a = fold(arrival(streams, seed_a, 0))
    _, out_b = fold(arrival(streams, seed_b, duplicates))
    assert summary(out_a) == summary(out_b)
    assert all(d.status == "final" for d in latest(out_b).values())
    # ... and they are the dialogues of the whole meeting, grouped offline.
    finals = sorted(
        ([e.start_ms, e.speaker_id, e.utterance_id, e.end_ms, e.text, False, e.stream_id]
         for events in streams.values() for e in events if isinstance(e, TranscriptFinalV1)),
        key=lambda u: (u[0], u[1], u[2]),
    )  # fmt: skip
    offline = group(MEETING, finals, PAUSE)
    assert summary(out_b) == sorted((d.speaker_id, d.start_ms, d.end_ms, d.text, "final") for d in offline)
    finals_by_position = sorted((d.position, d.start_ms) for d in latest(out_b).values())
    assert [p for p, _ in finals_by_position] == list(range(len(offline)))


@settings(max_examples=100, deadline=None)
@given(st.one_of(meetings(), rough_meetings()), st.integers(0, 10**6), st.integers(0, 8))
def test_revisions_increase_one_by_one_and_the_placed_one_is_last(streams: dict[str, list[EventV]], seed: int,
                                                                  dups: int) -> None:  # fmt: skip
    _, out = fold(arrival(streams, seed, dups))
    for updates in _histories(out).values():
        assert [u.revision for u in updates] == list(range(1, len(updates) + 1))
        assert all(not u.placed for u in updates[:-1]), "nothing follows a placed revision"
        assert updates[-1].placed or updates[-1].status == "retracted", "every stream stopped: all placed"
    assert len({u.event_id for u in out}) == len(out), "event ids are unique"


def _histories(out: list[Any]) -> dict[str, list[DialogueUpdateV1]]:
    history: dict[str, list[DialogueUpdateV1]] = {}
    for u in out:
        if isinstance(u, DialogueUpdateV1):
            history.setdefault(u.dialogue_id, []).append(u)
    return history


def _words(u: DialogueUpdateV1) -> tuple[Any, ...]:
    return (u.speaker_id, u.start_ms, u.end_ms, u.text, u.utterance_ids, u.utterances)


def _assert_final_words_never_change(out: list[Any]) -> None:
    """Once a revision is final, every later revision of that dialogue is final with the same words; only
    final dialogues are placed, and a final dialogue is never retracted."""
    for updates in _histories(out).values():
        finals = [i for i, u in enumerate(updates) if u.status == "final"]
        if finals:
            first = updates[finals[0]]
            for later in updates[finals[0]:]:
                assert later.status == "final", f"{later.status} after final: {first.dialogue_id}"
                assert _words(later) == _words(first), "the words of a final dialogue changed"
                assert all(x.final for x in later.utterances), "a final dialogue holds finals only"
        assert all(u.status == "final" for u in updates if u.placed)


# -- conflation (one batch's outputs) ----------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(meetings(), st.integers(0, 10**6), st.integers(0, 8), st.integers(1, 40))
def test_conflating_batches_keeps_the_final_dialogues_and_the_newest_revisions(
    streams: dict[str, list[EventV]], seed: int, dups: int, batch: int
) -> None:
    events = arrival(streams, seed, dups)
    _, unbatched = fold(events)
    state, sent = new_state(), []
    for start in range(0, len(events), batch):
        state, out = fold(events[start : start + batch], state)
        sent.extend(u for u, _ in conflate([(u, None) for u in out]))
    assert summary(sent) == summary(unbatched)
    assert {u.event_id for u in sent} <= {u.event_id for u in unbatched}, "a subset of the same events"
    last_watermark = [u for u in unbatched if isinstance(u, MeetingWatermarkV1)][-1:]
    assert [u for u in sent if isinstance(u, MeetingWatermarkV1)][-1:] == last_watermark


def test_conflate_keeps_the_last_occurrence_in_place() -> None:
    _, out = fold([started("a"), partial("a", 0, 500, "", "hel", 0), partial("a", 0, 900, "", "hello", 1),
                   final("a", 0, 1000), stopped("a", at_ms=1000)])  # fmt: skip
    kept = [u for u, _ in conflate([(u, i) for i, u in enumerate(out)])]
    dialogues = [u for u in kept if isinstance(u, DialogueUpdateV1)]
    assert len(dialogues) == 1 and dialogues[0].status == "final"
    assert isinstance(kept[-1], MeetingWatermarkV1), "the final dialogue still precedes its watermark"


def test_published_updates_are_valid_events() -> None:
    # apply builds dialogue updates without validation (hot path): their encoding must still validate.
    _, out = fold([started("a"), started("b"), partial("a", 0, 500, "", "hi", 0), final("a", 0, 900),
                   final("b", 300, 1200), stopped("a", at_ms=1300), stopped("b", at_ms=1300)])  # fmt: skip
    assert out
    for update in out:
        assert decode(encode(update)) == update


@settings(max_examples=100, deadline=None)
@given(meetings(), st.integers(0, 10**6), st.integers(0, 8))
def test_every_revision_is_its_utterances(streams: dict[str, list[EventV]], seed: int, dups: int) -> None:
    """A reader may draw a box from its utterances alone: they give its ids, start, end and text."""
    _, out = fold(arrival(streams, seed, dups))
    for u in out:
        if isinstance(u, DialogueUpdateV1) and u.status != "retracted":
            assert tuple(x.utterance_id for x in u.utterances) == u.utterance_ids
            assert (u.start_ms, u.end_ms) == (u.utterances[0].start_ms, max(x.end_ms for x in u.utterances))
            assert u.text == " ".join(x.text for x in u.utterances if x.text)
            assert u.status == "live" or all(x.final for x in u.utterances)


def test_a_session_resumed_before_the_last_stop_goes_on_from_the_stop() -> None:
    """The client resumes at its last ack (4 s), the server had audio up to 5 s: the new session is live, so
    it holds the watermark until its words come, its stop counts, and a redelivered start changes nothing."""
    stream = ids.stream_id(MEETING, "a")
    resumed = StreamStartedV1(event_id=ids.event_id("stream.started", stream, 4 * RATE), meeting_id=MEETING,
                              speaker_id="a", stream_id=stream, sample_rate=RATE, stream_start_ms=0,
                              first_sample=4 * RATE, run=RUN)  # fmt: skip
    state, out = fold([started("a"), started("b"), final("a", 0, 4900), stopped("a", at_ms=5000), resumed,
                       final("b", 8000, 9000), stopped("b", at_ms=9000)])  # fmt: skip
    assert not any(d.placed and d.speaker_id == "b" for d in latest(out).values()), "a's words may come first"
    assert fold([started("a")], state)[1] == [] and fold([resumed], state)[1] == []
    _, more = fold([final("a", 5000, 7000), stopped("a", at_ms=7500)], state)
    finals = [d for d in latest(out + more).values() if d.placed]
    assert [(d.speaker_id, d.start_ms, d.text) for d in sorted(finals, key=lambda d: d.position)] == [
        ("a", 0, "a@0 a@5000"), ("b", 8000, "b@8000")]
