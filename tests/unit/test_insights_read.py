"""The read side of enrichment, its pure parts: which result a read shows (``api.insight_queries.chosen``),
human edits folded into action items, the backend names the API checks requests against, and the live
socket's ``summary`` and ``insights`` messages (api/live_messages.py) and the hub's memory of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

import palaver.events
from api.insight_queries import chosen, fold_edits
from api.insights import EnrichmentAsk
from api.live_buffer import RecentMessages
from api.live_messages import message_of
from enrichment.backend import BACKENDS
from palaver.enrichment_backends import BACKEND_NAMES, unknown_backend
from palaver.events import decode
from palaver.events.insights_v1 import MeetingInsightsV1, SummaryChunkV1

EXAMPLES = Path(palaver.events.__file__).parent / "examples" / "insights"
RESULT = decode((EXAMPLES / "meeting.insights-v1/standup-ended.json").read_bytes())
CHUNK = decode((EXAMPLES / "summary.chunk-v1/standup-first-section.json").read_bytes())


def _item(action_item_id: str, **fields: Any) -> dict[str, Any]:
    return {"action_item_id": action_item_id, "description": "Fix it", "status": "pending", **fields}


def _edit(target: str, action: str, **fields: Any) -> dict[str, Any]:
    return {"target_id": target, "action": action, "fields": orjson.dumps(fields).decode()}


# --- which result ------------------------------------------------------------------------------------


def test_the_default_result_is_the_first_and_a_named_run_is_that_run_or_none() -> None:
    rows = [{"run": "whisper:tiny.en/local"}, {"run": "whisper:tiny.en~replay/local"}]
    assert chosen(rows, None) == rows[0]
    assert chosen(rows, "whisper:tiny.en~replay/local") == rows[1]
    assert chosen(rows, "whisper:tiny.en/openai") is None
    assert chosen([], None) is None


# --- edits on action items -----------------------------------------------------------------------------


def test_edits_fold_in_order_reset_forgets_and_delete_hides() -> None:
    items = [_item("a"), _item("b"), _item("c"), _item("d")]
    edits = [
        _edit("a", "edit", status="done"), _edit("a", "edit", description="Fix the test"),
        _edit("b", "edit", status="done"), _edit("b", "reset"),
        _edit("c", "delete"),
        _edit("d", "delete"), _edit("d", "edit", priority="high"),
        _edit("gone", "edit", status="done"),  # an item this result does not list stays unlisted
    ]  # fmt: skip
    out = {item["action_item_id"]: item for item in fold_edits(items, edits)}
    assert set(out) == {"a", "b", "d"}
    assert (out["a"]["status"], out["a"]["description"], out["a"]["edited"]) == ("done", "Fix the test", True)
    assert (out["b"]["status"], out["b"]["edited"]) == ("pending", False)
    assert (out["d"]["priority"], out["d"]["edited"]) == ("high", True)
    assert items[0]["status"] == "pending", "the rows read are not changed"


# --- backend names ---------------------------------------------------------------------------------------


def test_the_api_knows_exactly_the_registered_backends() -> None:
    assert set(BACKEND_NAMES) == set(BACKENDS)
    assert unknown_backend("local") is None
    assert unknown_backend("gpt") == f"unknown enrichment backend 'gpt'; choose one of {', '.join(BACKEND_NAMES)}"


def test_a_request_for_an_unknown_backend_does_not_validate_and_names_the_known_ones() -> None:
    assert EnrichmentAsk().backend is None and EnrichmentAsk(backend="local").backend == "local"
    with pytest.raises(ValidationError, match="choose one of local"):
        EnrichmentAsk(backend="gpt")
    with pytest.raises(ValidationError):
        EnrichmentAsk.model_validate({"backend": "local", "model": "x"})


# --- live messages -----------------------------------------------------------------------------------------


def test_a_chunk_is_a_summary_message_of_its_own() -> None:
    assert isinstance(CHUNK, SummaryChunkV1)
    message = message_of(CHUNK)
    assert message is not None and (message.type, message.key, message.order) == (
        "summary", f"{CHUNK.enrichment_id}/0", 0)
    assert orjson.loads(message.text) == {"type": "summary", "meeting_id": CHUNK.meeting_id, "run": CHUNK.run,
                                          "enrichment_id": CHUNK.enrichment_id, "seq": 0, "text": CHUNK.text,
                                          "reset": False}  # fmt: skip


def test_a_result_is_an_insights_message_keyed_by_run_and_ordered_by_revision() -> None:
    assert isinstance(RESULT, MeetingInsightsV1)
    message = message_of(RESULT)
    assert message is not None and (message.type, message.key, message.order) == ("insights", RESULT.run, 7)
    assert orjson.loads(message.text) == {"type": "insights", **RESULT.model_dump(mode="json")}


def test_a_replays_results_and_chunks_never_go_out_on_the_live_socket() -> None:
    assert isinstance(RESULT, MeetingInsightsV1) and isinstance(CHUNK, SummaryChunkV1)
    replay = "whisper:tiny.en~replay"
    assert message_of(RESULT.model_copy(update={"transcript_run": replay, "run": f"{replay}/local"})) is None
    assert message_of(CHUNK.model_copy(update={"run": f"{replay}/local"})) is None


def test_the_hub_remembers_every_chunk_in_order_and_the_newest_result_of_a_run() -> None:
    assert isinstance(RESULT, MeetingInsightsV1) and isinstance(CHUNK, SummaryChunkV1)
    recent = RecentMessages(clock=lambda: 0.0)
    for seq in range(3):
        recent.add(message_of(CHUNK.model_copy(update={"seq": seq, "text": f"part {seq}"})))  # type: ignore[arg-type]
    recent.add(message_of(RESULT))  # type: ignore[arg-type]
    recent.add(message_of(RESULT.model_copy(update={"revision": 5})))  # type: ignore[arg-type]  # redelivered older
    kept = [orjson.loads(m.text) for m in recent.recent(RESULT.meeting_id)]
    assert [(m["type"], m.get("seq"), m.get("revision")) for m in kept] == [
        ("summary", 0, None), ("summary", 1, None), ("summary", 2, None), ("insights", None, 7)]
