"""``palaver replay --from dialogues`` on the real pipeline with the enrichment service: a meeting streamed
live, its run merged again with a shorter pause (``--from transcripts``), then that replay run enriched
by the running enrichment service into ``RUN/local`` on request; the same replay again asks nothing and
adds no row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import ENRICHMENT_REQUESTS
from palaver.runs import merge_run
from tests.integration.conftest import WEB, Infra, Pipeline, poll, running_pipeline
from tests.integration.meetings import open_meeting, stream_tracks
from tests.integration.test_replay import all_final, final_dialogues, palaver, store_clock, topic_events
from tests.integration.test_replay_transcripts import PAUSE, SCRIPT

pytestmark = pytest.mark.integration

LIVE = "whisper:tiny.en"


@pytest.fixture(scope="module")
async def enriching(infra: Infra, clickhouse_client: object,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:  # fmt: skip
    """The pipeline with the enrichment service in its web process (the local backend)."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=1,
                                web=WEB | {"enrichment"}) as p:  # fmt: skip
        yield p


async def insights_rows(p: Pipeline, meeting_id: str, run: str, since_ms: int = 0) -> list[dict[str, Any]]:
    """The enrichment run's rows inserted since ``since_ms`` (without FINAL: every insert counts)."""
    return await p.store.aquery(
        f"SELECT run, transcript_run, trigger, final, transcript_revision FROM {p.store.database}.meeting_insights "
        "WHERE meeting_id = {m:String} AND run = {r:String} AND toUnixTimestamp64Milli(inserted_at) >= {t:Int64}",
        {"m": meeting_id, "r": run, "t": since_ms},
    )


async def test_a_replay_from_the_dialogues_enriches_a_replay_run_once(enriching: Pipeline) -> None:
    p = enriching
    tracks, _ = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(p.url, tracks)
    m = meeting.meeting_id
    results = await stream_tracks(p.url, meeting, tracks, speed=4.0)
    assert all(r.close_code == 1000 for r in results)
    await poll(lambda: final_dialogues(p, m, LIVE), lambda rows: all_final(rows, 2), "the live run's dialogues",
               timeout_s=240)  # fmt: skip
    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "transcripts", "--set", PAUSE,
                                   "--nice", "0")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    merged = merge_run(LIVE, {"merger_pause_ms": 100})
    await poll(lambda: final_dialogues(p, m, merged), lambda rows: all_final(rows, 3), "the merged run's dialogues",
               timeout_s=240)  # fmt: skip

    target = f"{merged}/local"
    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "dialogues", "--run", merged,
                                   "--set", "enrichment_backend=local")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    assert f"asked the enrichment service to enrich the 3 placed dialogue(s) of run {merged} with local, into " \
           f"enrichment run {target}" in out, out  # fmt: skip
    rows = await poll(lambda: insights_rows(p, m, target), lambda rows: any(r["final"] for r in rows),
                      "the replay run's enrichment", timeout_s=240)  # fmt: skip
    final = next(r for r in rows if r["final"])
    assert (final["transcript_run"], final["trigger"], final["transcript_revision"]) == (merged, "requested", 3)
    async with meeting.people["ben"].client() as http:
        shown = await http.get(f"/v1/meetings/{m}/insights", params={"run": target})
        assert shown.status_code == 200 and shown.json()["run"] == target, shown.text

    # The same replay again asks nothing, and nothing more is written.
    requests = [e for e in await topic_events(p.settings, ENRICHMENT_REQUESTS, m) if e.get("run") == merged]
    assert len(requests) == 1, requests
    before = await store_clock(p)
    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "dialogues", "--run", merged,
                                   "--set", "enrichment_backend=local")  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    assert f"enrichment run {target} covers the 3 placed dialogue(s) of run {merged} already: asked nothing" in out
    assert [e for e in await topic_events(p.settings, ENRICHMENT_REQUESTS, m) if e.get("run") == merged] == requests
    assert await insights_rows(p, m, target, before) == []

    # A run the dialogues topic does not have is refused, naming the ones it has.
    code, _, err = await palaver(p.settings, "replay", "--meeting", m, "--from", "dialogues", "--run", "nope")
    assert code == 1 and f"no dialogue event of run 'nope' on the dialogues topic (its runs: {LIVE}, {merged})" in err
