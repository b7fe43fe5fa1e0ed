"""A meeting's vocabulary through the real pipeline: the glossary set with ``PATCH /v1/meetings/{m}`` (with its
participants' names, title and agenda) reaches the STT worker on the ``meeting.vocabulary`` topic and
primes its decoder, live and in ``palaver replay``; the same speech in a meeting without it is written
otherwise. Real Whisper (the bundled tiny.en), real broker, real store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.runs import replay_run
from tests.integration.conftest import Pipeline, poll
from tests.integration.meetings import open_meeting, stream_tracks
from tests.integration.test_replay import all_final, final_dialogues, palaver

pytestmark = pytest.mark.integration
LIVE = "whisper:tiny.en"
# Without a vocabulary tiny.en writes "A.I." and "graph on a" for the name and the product.
SAID = (Line("ana", "Aoife said the Grafana dashboards for Kafka lag are ready."),)
GLOSSARY = ["Aoife", "Grafana", "Siobhan", "Nguyen"]  # two said, two not (the list is not the answer)


def words(rows: list[dict[str, Any]]) -> set[str]:
    return {w.strip(".,!?") for r in rows for w in r["dialogue_text"].split()}


async def test_a_glossary_brings_its_words_into_the_meetings_transcript(pipeline: Pipeline) -> None:
    p = pipeline
    tracks, _ = meeting_tracks(SAID, Voice())
    plain = await open_meeting(p.url, tracks)
    primed = await open_meeting(p.url, tracks, title="Dashboards review")
    async with primed.people["ana"].client() as http:
        url = f"/v1/meetings/{primed.meeting_id}"
        for bad in ([""], ["   "], ["x" * 101], [f"term{i}" for i in range(101)], "Aoife"):
            answer = await http.patch(url, json={"glossary": bad})
            assert answer.status_code == 422 and "glossary" in answer.text, (bad, answer.text)
        changed = await http.patch(url, json={"glossary": GLOSSARY})
        assert changed.status_code == 200 and changed.json()["glossary"] == GLOSSARY, changed.text
        assert (await http.get(url)).json()["glossary"] == GLOSSARY
    # names (1), glossary (4) and title (1): the worker has them before the audio comes
    await asyncio.to_thread(p.stt.wait_for_log, f"vocabulary of {primed.meeting_id}: 6 terms", 60)

    for meeting in (plain, primed):
        results = await stream_tracks(p.url, meeting, tracks, speed=4.0)
        assert all(r.close_code == 1000 for r in results)
    heard = {}
    for meeting in (plain, primed):
        heard[meeting.meeting_id] = await poll(lambda m=meeting.meeting_id: final_dialogues(p, m, LIVE),
                                               lambda rows: all_final(rows, 1), "the final dialogue", timeout_s=240)  # fmt: skip
    without, with_it = words(heard[plain.meeting_id]), words(heard[primed.meeting_id])
    assert not without & {"Aoife", "Grafana"}, heard[plain.meeting_id]
    assert {"Aoife", "Grafana"} <= with_it, heard[primed.meeting_id]
    assert not with_it & {"Siobhan", "Nguyen"}, "no glossary word that was not said"

    # A replay decodes with the meeting's vocabulary too (here in the other decode mode: a run of its own).
    code, out, err = await palaver(p.settings, "replay", "--meeting", primed.meeting_id, "--set",
                                   "whisper_decode=timestamps", "--nice", "0")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    run = replay_run("whisper", "tiny.en", {"whisper_decode": "timestamps"})
    replayed = await poll(lambda: final_dialogues(p, primed.meeting_id, run), lambda rows: all_final(rows, 1),
                          "the replay's final dialogue", timeout_s=240)  # fmt: skip
    assert {"Aoife", "Grafana"} <= words(replayed), replayed
