"""The topics tables of docs/architecture.md and the README are the registry's, rendered
(palaver/events/topics_table.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from palaver.events.registry import DLQ_REPLAYS, STATE_TOPICS, TOPICS
from palaver.events.topics_table import BEGIN, END, REGENERATE, generated_part, main, render, with_table

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"


@pytest.mark.parametrize("path", [ARCHITECTURE, README])
def test_the_documents_show_the_registry(path: Path) -> None:
    document = path.read_text()
    regenerate = REGENERATE.replace(str(ARCHITECTURE.relative_to(ROOT)), str(path.relative_to(ROOT)))
    stale = f"the topics table of {path.name} differs from the registry: run `{regenerate}`"
    assert generated_part(document) == render(), stale


def test_the_table_has_a_row_per_topic_with_its_producers_and_consumers() -> None:
    lines = render().splitlines()
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert list(rows) == [spec.name for spec in (*TOPICS, *STATE_TOPICS, DLQ_REPLAYS)] + ["<topic>.dlq"]
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)  # every row fills every column
    assert "| merger, palaver replay | store, live (api), enrichment, palaver replay | `dialogue.update/1`, `meeting.watermark/1` |" in rows["dialogues"]
    assert "| 7 d | delete | ingest | stt, palaver replay, palaver check | `audio.frame/1`," in rows["audio.frames"]


def test_with_table_replaces_only_what_lies_between_the_markers() -> None:
    document = f"# Title\n\nbefore\n{BEGIN}\n| old |\n{END}\nafter\n"
    assert with_table(document, "| new |") == f"# Title\n\nbefore\n{BEGIN}\n| new |\n{END}\nafter\n"
    assert generated_part(with_table(document, render())) == render()
    with pytest.raises(ValueError, match="no topics table"):
        with_table("# no markers\n", "| new |")
    with pytest.raises(ValueError, match="no topics table"):
        generated_part(f"{END}\n{BEGIN}\n")


def test_write_updates_a_stale_document_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tmp_path / "architecture.md"
    document.write_text(f"intro\n{BEGIN}\n| stale |\n{END}\n")
    assert main(["--write", str(document)]) == 0
    assert generated_part(document.read_text()) == render()
    assert main(["--write", str(document)]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"{document}: topics table updated",
        f"{document}: topics table already up to date",
    ]
