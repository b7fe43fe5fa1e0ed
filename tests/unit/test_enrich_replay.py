"""``palaver replay --from dialogues``'s pure parts (enrichment/replay.py): the backend it asks for, the
runs and placed dialogues it reads, when it asks nothing, and its request."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrichment.replay import (
    REQUESTED_BY,
    EnrichReplayError,
    dialogue_runs,
    enriched_already,
    placed_dialogues,
    replay_backend,
    replay_request,
)
from palaver.events import MeetingWatermarkV1, encode
from palaver.events.insights_v1 import MeetingInsightsV1
from palaver.settings import Settings

RUN = "whisper:tiny.en"
MERGED = f"{RUN}~merge"
INSIGHTS_EXAMPLES = Path(__file__).parents[2] / "palaver/events/examples/insights/meeting.insights-v1"


def _watermark(run: str, placed: int) -> bytes:
    return encode(MeetingWatermarkV1(event_id=f"evt_{run}_{placed}", meeting_id="m", run=run, watermark_ms=9000,
                                     final_dialogues=placed))  # fmt: skip


def _insights(run: str, placed: int, final: bool = True) -> bytes:
    event = MeetingInsightsV1.model_validate_json(next(INSIGHTS_EXAMPLES.glob("*.json")).read_bytes())
    return encode(event.model_copy(update={"run": run, "transcript_revision": placed, "final": final}))


def test_the_backend_is_the_set_one_or_the_environments() -> None:
    assert replay_backend(Settings(enrichment_backend="openai"), {}) == "openai"
    assert replay_backend(Settings(), {"enrichment_backend": "watsonx"}) == "watsonx"


@pytest.mark.parametrize(("sets", "message"), [
    ({"enrichment_backend": "gpt"}, r"enrichment_backend=gpt: not a backend \(there are local, openai, watsonx\)"),
    ({"merger_pause_ms": "100"}, r"merger_pause_ms: the merger's: replay the transcripts \(--from transcripts\)"),
    ({"whisper_beam_size": "2"}, r"whisper_beam_size: it decides the transcription: replay the audio"),
    ({"nope": "1"}, "nope: no such setting; a replay from the dialogues takes enrichment_backend"),
])  # fmt: skip
def test_other_settings_are_refused_saying_why(sets: dict[str, str], message: str) -> None:
    with pytest.raises(EnrichReplayError, match=message):
        replay_backend(Settings(), sets)


def test_the_runs_and_their_placed_dialogues() -> None:
    values = [_watermark(RUN, 1), b"bad", _watermark(MERGED, 2), _watermark(RUN, 3), _watermark(MERGED, 1)]
    assert dialogue_runs(values) == [RUN, MERGED]
    assert (placed_dialogues(values, RUN), placed_dialogues(values, MERGED), placed_dialogues(values, "x")) == (3, 2, 0)


def test_it_asks_nothing_only_when_a_final_result_of_that_run_covers_the_placed_dialogues() -> None:
    target = f"{MERGED}/local"
    assert enriched_already([_insights(target, 3)], target, 3)
    assert enriched_already([_insights(target, 4)], target, 3)
    assert not enriched_already([_insights(target, 2)], target, 3), "fewer placed dialogues: enrich again"
    assert not enriched_already([_insights(target, 3, final=False)], target, 3), "a rolling result is not one"
    assert not enriched_already([_insights(f"{RUN}/local", 3), b"bad"], target, 3)


def test_the_request_names_the_run_and_its_id_the_run_backend_and_placed_count() -> None:
    one = replay_request("m", MERGED, "local", 3, now_ms=1)
    assert (one.run, one.backend, one.reason, one.requested_by) == (MERGED, "local", "requested", REQUESTED_BY)
    assert one.event_id == replay_request("m", MERGED, "local", 3, now_ms=2).event_id
    assert len({replay_request("m", MERGED, "local", 4, 1).event_id, replay_request("m", MERGED, "openai", 3, 1).event_id,
                replay_request("m", RUN, "local", 3, 1).event_id, one.event_id}) == 4  # fmt: skip
