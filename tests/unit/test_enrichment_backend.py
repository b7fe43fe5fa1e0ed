"""The backend interface, the local backend end to end, the transcript file reader and `palaver enrich`."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from enrichment.backend import EnrichmentBackend, UnknownBackendError, backend_named
from enrichment.local import LocalBackend
from enrichment.transcript_file import TranscriptFileError, parse_transcript
from stack.cli import main
from tests.unit.enrichment_helpers import meeting

KEYS = ["summary", "action_items", "keywords", "mood", "agenda", "metrics"]


def test_the_local_backend_is_registered_and_implements_the_interface() -> None:
    backend = backend_named("local")
    assert isinstance(backend, LocalBackend) and isinstance(backend, EnrichmentBackend) and backend.name == "local"
    with pytest.raises(UnknownBackendError, match="choose one of local, openai, watsonx"):
        backend_named("gpt")


def test_local_enrichment_is_whole_and_deterministic() -> None:
    transcript = meeting("Ann: The release is blocked on the flaky checkout test.",
                         "Bob: I'll fix the flaky checkout test by Friday.", "Ann: Great, thanks Bob.")
    first, second = LocalBackend().enrich(transcript), LocalBackend().enrich(transcript)
    assert first == second and first.backend == "local"
    out = first.to_json()
    assert set(KEYS) <= set(out)
    assert out["action_items"][0] | {"dialogue_ids": []} == {
        "description": "Fix the flaky checkout test", "assignee": "Bob", "start_date": None, "due_date": "2026-03-06",
        "priority": "normal", "status": "pending", "dialogue_ids": []}  # fmt: skip
    assert out["metrics"]["speakers"]["Bob"]["turns"] == 1 and out["mood"]["overall"]["label"] in ("positive", "neutral")


def test_lines_parse_with_estimated_timings() -> None:
    t = parse_transcript("Ann: Hello there.\n\n[00:05] Bob: I'll send it.\n", date(2026, 3, 4), ("Ann", "Bob"))
    assert [(d.speaker, d.text) for d in t.dialogues] == [("Ann", "Hello there."), ("Bob", "I'll send it.")]
    assert t.dialogues[1].start_ms > t.dialogues[0].end_ms and t.participants == ("Ann", "Bob")


def test_the_json_export_parses_with_its_date_participants_and_agenda() -> None:
    data = {"meeting": {"started_at": "2026-03-04T09:00:00Z", "agenda": [{"title": "Budget"}]},
            "participants": [{"display_name": "Ann"}, "Bob"],
            "dialogues": [{"dialogue_id": "x1", "speaker_id": "spk_1", "start_ms": 0, "end_ms": 900, "text": "Hi."},
                          {"speaker_name": "Bob", "start_ms": 1000, "end_ms": 2000, "text": "Hello."}]}  # fmt: skip
    t = parse_transcript(json.dumps(data))
    assert (t.meeting_date, t.participants, t.agenda) == (date(2026, 3, 4), ("Ann", "Bob"), ("Budget",))
    assert [(d.dialogue_id, d.speaker) for d in t.dialogues] == [("x1", "spk_1"), ("d0002", "Bob")]
    assert parse_transcript(json.dumps(data), date(2026, 1, 1)).meeting_date == date(2026, 1, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("{oops", "not valid JSON"), ('{"dialogues": 3}', "'dialogues' list"),
     ('{"dialogues": [{"start_ms": 0, "end_ms": 1, "text": "x"}]}', "dialogues[0] has no speaker"),
     ('{"dialogues": [{"speaker_id": "a", "start_ms": 5, "end_ms": 1, "text": "x"}]}', "start_ms <= end_ms"),
     ('{"date": "soon", "dialogues": []}', "not an ISO date"), ("just some words", "line 1: expected 'speaker: text'")],
)  # fmt: skip
def test_bad_files_are_named_clearly(text: str, message: str) -> None:
    with pytest.raises(TranscriptFileError, match=re.escape(message)):
        parse_transcript(text)


def test_palaver_enrich_prints_one_json_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.txt"
    path.write_text("Ann: Bob, can you book the room for next Tuesday?\nBob: Sure.\n")
    assert main(["enrich", str(path), "--meeting-date", "2026-03-04", "--participants", "Ann,Bob"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == [*KEYS, "backend", "fallback"] and (out["backend"], out["fallback"]) == ("local", None)
    [item] = out["action_items"]
    assert (item["assignee"], item["due_date"], item["status"]) == ("Bob", "2026-03-10", "pending")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--meeting-date", "04/03/2026"], "is not YYYY-MM-DD"), (["--backend", "gpt"], "unknown enrichment backend"),
     (["--participants", "A"], None)],
)  # fmt: skip
def test_palaver_enrich_bad_input_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], message: str | None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "m.json"
    path.write_text('{"dialogues": [{"speaker_name": "A", "start_ms": 0}]}')
    assert main(["enrich", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("palaver: ") and err.count("\n") == 1
    assert message is None or message in err
    assert main(["enrich", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
