"""The web app's pure handling of enrichment results (api/webapp/static/insight_state.js), run in Node: the
detailed summary being written is its pieces in order from the last reset, nothing while one is missing;
a result replaces the one shown when it is a newer revision of its run or a newer result of another run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import api.webapp

NODE = shutil.which("node")
MODULE = (Path(api.webapp.__file__).parent / "static" / "insight_state.js").as_uri()

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")


def run(script: str) -> Any:
    """``script``'s ``out`` (JSON), with the module's exports in scope."""
    program = f'const {{ SummaryPieces, normalized, replaces }} = await import("{MODULE}");\n{script}\n' \
              "process.stdout.write(JSON.stringify(out));"
    done = subprocess.run([NODE, "--input-type=module", "-e", program], capture_output=True, text=True, check=True,
                          timeout=60)  # fmt: skip
    return json.loads(done.stdout)


def test_pieces_join_in_order_wait_for_a_missing_one_and_start_over_at_a_reset() -> None:
    out = run("""
        const p = new SummaryPieces(), seen = [];
        const piece = (seq, text, reset = false, id = "enr_1") => ({ enrichment_id: id, seq, text, reset });
        p.add(piece(1, "B")); seen.push(p.text());
        p.add(piece(0, "A")); seen.push(p.text());
        p.add(piece(3, "D")); seen.push(p.text());
        p.add(piece(2, "C")); seen.push(p.text());
        p.add(piece(4, "x", true)); seen.push(p.text());
        p.add(piece(5, "y")); seen.push(p.text());
        p.add(piece(0, "new", false, "enr_2")); seen.push(p.text());
        const out = { seen, id: p.enrichmentId };
    """)
    assert out == {"seen": [None, "AB", "AB", "ABCD", "x", "xy", "new"], "id": "enr_2"}


def test_a_result_replaces_an_older_revision_of_its_run_or_an_older_result_of_another() -> None:
    out = run("""
        const r = (run, revision, produced_at_ms) => ({ run, revision, produced_at_ms });
        const shown = r("w/local", 6, 1000);
        const out = [replaces(null, shown), replaces(shown, r("w/local", 9, 900)), replaces(shown, r("w/local", 6, 1000)),
                     replaces(shown, r("w/local", 5, 2000)), replaces(shown, r("d/local", 2, 1001)),
                     replaces(shown, r("d/local", 99, 999))];
    """)
    assert out == [True, True, True, False, True, False]


def test_a_message_and_a_get_give_one_shape() -> None:
    out = run("""
        const out = [normalized({ summary_brief: "b", summary_detailed: "d", run: "r" }),
                     normalized({ summary: { brief: "b", detailed: "d" }, run: "r" })];
    """)
    assert out[0]["summary"] == out[1]["summary"] == {"brief": "b", "detailed": "d"}
