"""``palaver replay --from transcripts``'s pure parts (merger/replay.py): the settings it takes, the run it
merges and the run it names, the merge itself, and what it leaves unpublished."""

from __future__ import annotations

import pytest

from merger.replay import (
    MergeReplayError,
    NoRuns,
    meeting_events,
    merge_overrides,
    not_published,
    published_event_ids,
    remerge,
    source_run,
)
from palaver.events import DialogueUpdateV1, encode
from palaver.events.base import EventV
from palaver.runs import is_replay, merge_run
from palaver.settings import Settings
from tests.unit.test_pipeline_merger import RUN, _final, _started, _stopped

M = "m1"


def _meeting() -> list[EventV]:
    """Alice speaks twice with a 1 s pause between, then Bob answers; both streams stop."""
    return [
        _started(M, "alice"),
        _started(M, "bob"),
        _final(M, "alice", 0, 1000, "First part."),
        _final(M, "alice", 2000, 3000, "Second part."),
        _final(M, "bob", 3500, 4500, "An answer."),
        _stopped(M, "alice", 5000),
        _stopped(M, "bob", 5000),
    ]


def _dialogues(updates: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(u.speaker_id, u.text, u.status) for u in updates
            if isinstance(u, DialogueUpdateV1) and u.status != "retracted"]  # fmt: skip


def test_the_pause_rule_decides_the_new_runs_dialogues() -> None:
    run = merge_run(RUN, {"merger_pause_ms": 500})
    short = remerge(M, _meeting(), run, 500)
    long = remerge(M, _meeting(), run, 1500)
    assert _dialogues(short) == [("alice", "First part.", "final"), ("alice", "Second part.", "final"),
                                 ("bob", "An answer.", "final")]  # fmt: skip
    assert _dialogues(long) == [("alice", "First part. Second part.", "final"), ("bob", "An answer.", "final")]
    assert {u.run for u in short} == {run}, "every event is the new run's"
    assert all(u.placed for u in short if isinstance(u, DialogueUpdateV1) and u.status == "final")


def test_the_same_events_merge_into_the_same_updates_and_the_source_events_are_untouched() -> None:
    events = _meeting()
    first = remerge(M, events, "r~merge", 500)
    assert [encode(u) for u in remerge(M, _meeting(), "r~merge", 500)] == [encode(u) for u in first]
    assert len({u.event_id for u in first}) == len(first), "one event per dialogue and one watermark"
    assert all(getattr(e, "run", None) == RUN for e in events)


def test_only_what_the_dialogues_topic_lacks_is_published() -> None:
    updates = remerge(M, _meeting(), "r~merge", 500)
    on_topic = [encode(u) for u in updates[:2]] + [b"not json"]
    published = published_event_ids(on_topic, "r~merge")
    assert published == {u.event_id for u in updates[:2]}
    assert not_published(updates, published) == updates[2:]
    assert not not_published(updates, published_event_ids([encode(u) for u in updates], "r~merge"))
    assert published_event_ids(on_topic, "other~run") == set()


def test_the_run_is_named_by_its_source_and_overrides() -> None:
    assert merge_run(RUN, {}) == f"{RUN}~merge"
    named = merge_run(RUN, {"merger_pause_ms": 500})
    assert named.startswith(f"{RUN}~merge-") and len(named) == len(f"{RUN}~merge-") + 8 and is_replay(named)
    assert named == merge_run(RUN, {"merger_pause_ms": 500}) != merge_run(RUN, {"merger_pause_ms": 600})
    assert merge_run("whisper:tiny.en~replay", {}) == "whisper:tiny.en~replay~merge"


def test_the_settings_it_takes() -> None:
    settings, overrides = merge_overrides(Settings(), {"merger_pause_ms": "0900"})
    assert (settings.merger_pause_ms, overrides) == (900, {"merger_pause_ms": 900})
    assert merge_overrides(Settings(merger_pause_ms=700), {})[0].merger_pause_ms == 700


@pytest.mark.parametrize(("sets", "message"), [
    ({"whisper_beam_size": "2"}, r"whisper_beam_size: it decides the transcription: replay the audio \(--from audio\)"),
    ({"no_such": "1"}, "no_such: no such setting; a replay from the transcripts takes merger_pause_ms"),
    ({"merger_pause_ms": "soon"}, "merger_pause_ms: Input should be a valid integer"),
])  # fmt: skip
def test_it_refuses_other_settings_saying_why(sets: dict[str, str], message: str) -> None:
    with pytest.raises(MergeReplayError, match=message):
        merge_overrides(Settings(), sets)


def test_the_source_run_is_the_named_one_or_the_first_live_one() -> None:
    seen = ["whisper:tiny.en~replay", "whisper:base.en", "whisper:tiny.en"]
    assert source_run(seen, None) == "whisper:base.en"
    assert source_run(seen, "whisper:tiny.en~replay") == "whisper:tiny.en~replay"
    with pytest.raises(MergeReplayError, match=r"no transcript event of run 'x'.*its runs: whisper:tiny\.en~replay, "):
        source_run(seen, "x")
    with pytest.raises(MergeReplayError, match=r"no live run's transcript events.*name one with --run"):
        source_run(["a~replay"], None)
    with pytest.raises(NoRuns, match=r"no transcript event on the transcripts topic: nothing to replay"):
        source_run([], None)  # a backfill skips such a meeting rather than counts it refused
    with pytest.raises(NoRuns):
        source_run([], "whisper:tiny.en")


def test_the_meetings_events_are_kept_and_bad_records_counted() -> None:
    other = _final("m2", "cy", 0, 500, "Elsewhere.")
    events, bad = meeting_events(M, [encode(e) for e in _meeting()] + [b"{}", encode(other)])
    assert (len(events), bad) == (len(_meeting()), 1)


def test_a_merged_run_names_the_run_it_merged_again() -> None:
    from palaver.runs import merged_from

    assert merged_from(merge_run(RUN, {})) == RUN == merged_from(merge_run(RUN, {"merger_pause_ms": 1}))
    assert merged_from(merge_run("whisper:tiny.en~replay", {})) == "whisper:tiny.en~replay"
    assert [merged_from(r) for r in (RUN, "whisper:tiny.en~replay", f"{RUN}~merge-xyz", f"{RUN}~emerge")] == [
        RUN, "whisper:tiny.en~replay", f"{RUN}~merge-xyz", f"{RUN}~emerge"]  # fmt: skip
