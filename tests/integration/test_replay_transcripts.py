"""``palaver replay --from transcripts`` on the real pipeline: a meeting streamed live, its live run's
stored transcript events merged again with a shorter pause into a run of its own whose dialogues split
where the pause says, beside the live run; the same replay again publishes nothing and adds no row."""

from __future__ import annotations

import pytest

from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import DIALOGUES
from palaver.runs import merge_run
from stack.runs import compare_text, list_text
from tests.integration.conftest import Pipeline, poll
from tests.integration.meetings import open_meeting, stream_tracks
from tests.integration.test_replay import (
    all_final,
    changes,
    final_dialogues,
    palaver,
    rows_since,
    settled,
    store_clock,
    stored,
    topic_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("pipeline", ["whisper"], indirect=True)]

LIVE = "whisper:tiny.en"
# Ana's two lines are two utterances (the script's 900 ms gap is more silence than the VAD's 500 ms), one
# dialogue under the live merger's 1500 ms pause rule and two under a 100 ms one.
SCRIPT = (
    Line("ana", "The budget for the new office is approved."),
    Line("ana", "I will tell the whole team this afternoon."),
    Line("ben", "Then we can move in before the end of the month."),
)
PAUSE = "merger_pause_ms=100"


async def test_a_replay_from_the_transcripts_merges_a_run_again_with_another_pause(pipeline: Pipeline) -> None:
    p = pipeline
    tracks, _ = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(p.url, tracks)
    m = meeting.meeting_id
    results = await stream_tracks(p.url, meeting, tracks, speed=4.0)
    assert all(r.close_code == 1000 for r in results)
    live = await poll(lambda: final_dialogues(p, m, LIVE), lambda rows: all_final(rows, 2),
                      "the live run's two final dialogues", timeout_s=240)  # fmt: skip
    ana, ben = (d["speaker_id"] for d in live)
    assert ana != ben and len(live[0]["utterance_ids"]) == 2, live
    await settled(p)
    live_before = await stored(p, m, LIVE)

    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "transcripts", "--set", PAUSE,
                                   "--nice", "0")  # fmt: skip
    run = merge_run(LIVE, {"merger_pause_ms": 100})
    assert code == 0, f"{out}\n{err}"
    assert f"of run {LIVE} again into run {run}: 3 dialogue(s), 3 final; published " in out, out

    # The store writer stores the new run beside the live one: the same utterances, Ana's turn split in two.
    merged = await poll(lambda: final_dialogues(p, m, run), lambda rows: all_final(rows, 3),
                        "the merged run's final dialogues", timeout_s=240)  # fmt: skip
    assert [d["speaker_id"] for d in merged] == [ana, ana, ben]
    assert [u for d in merged for u in d["utterance_ids"]] == [u for d in live for u in d["utterance_ids"]]
    assert [d["dialogue_text"] for d in merged[:2]] != [live[0]["dialogue_text"]]
    assert " ".join(d["dialogue_text"] for d in merged[:2]) == live[0]["dialogue_text"]
    assert merged[2]["dialogue_text"] == live[1]["dialogue_text"]
    await settled(p)
    after_one = await stored(p, m, run)
    assert after_one["utterances"] == [], "nothing transcribed: the run's utterances are its source's"

    listed = await list_text(p.store, m)
    rows = [line.split() for line in listed.splitlines()[2:]]
    assert [row[:2] for row in rows] == [[LIVE, "live"], [run, "replay"]], listed
    # FINAL LIVE UTTERANCES WORDS SPEAKERS: the merged run's utterances are its source's.
    assert (rows[0][2], rows[1][2]) == ("2", "3") and rows[0][4:7] == rows[1][4:7], listed
    compared = await compare_text(p.store, m, [LIVE, run])
    assert "WER 0.0%" in compared and "no words differ" in compared, compared
    async with meeting.people["ben"].client() as http:
        assert (await http.get(f"/v1/meetings/{m}/dialogues")).json()["run"] == LIVE, "the meeting shows its live run"
        shown = (await http.get(f"/v1/meetings/{m}/dialogues", params={"run": run})).json()
        assert len(shown["dialogues"]) == 3, shown
    dialogue_events_one = [e for e in await topic_events(p.settings, DIALOGUES, m) if e["run"] == run]
    assert dialogue_events_one and len({e["event_id"] for e in dialogue_events_one}) == len(dialogue_events_one)

    # The same replay again: nothing published, no row written.
    before_two = await store_clock(p)
    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "transcripts", "--set", PAUSE,
                                   "--nice", "0")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    assert "published nothing: the dialogues topic holds the run already" in out, out
    await settled(p)
    assert [e for e in await topic_events(p.settings, DIALOGUES, m) if e["run"] == run] == dialogue_events_one
    assert await stored(p, m, run) == after_one, "no row added or changed"
    assert await rows_since(p, "dialogues", m, run, before_two) == 0, "no dialogue row written again"
    live_after = await stored(p, m, LIVE)
    assert live_after == live_before, f"the live run is untouched: {changes(live_before, live_after)}"
    assert [await rows_since(p, table, m, LIVE, before_two) for table in ("dialogues", "utterances")] == [0, 0]

    # A run the meeting does not have is refused, naming the ones it has.
    code, _, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "transcripts", "--run", "nope")
    assert code == 1 and f"no transcript event of run 'nope' on the transcripts topic (its runs: {LIVE})" in err, err
