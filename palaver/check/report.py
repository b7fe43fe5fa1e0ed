"""What ``palaver check`` found, named as Jepsen names anomalies, and how it is printed.

A report is valid when it holds no finding. Notes say what was seen but is allowed (audio a resumed
connection sent again) and what could not be judged (no client log, a run not settled yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACKED_AUDIO_LOST = "acked audio lost"  # a client was told it is durable; the audio topic does not hold it
AUDIO_LOST = "audio lost"  # inside a connection the topic itself says is durable (its stream.stopped)
AUDIO_DUPLICATED = "audio duplicated"  # samples of a stream the topic holds more than once (not a resume)
UTTERANCES_LOST = "utterances lost"
UTTERANCES_DUPLICATED = "utterances duplicated"
DIALOGUES_OUT_OF_ORDER = "dialogues out of order"
KINDS = (ACKED_AUDIO_LOST, AUDIO_LOST, AUDIO_DUPLICATED, UTTERANCES_LOST, UTTERANCES_DUPLICATED,
         DIALOGUES_OUT_OF_ORDER)  # fmt: skip
SHOWN_PER_KIND = 20  # the text report lists this many findings of a kind (the JSON one lists all)


@dataclass(frozen=True)
class Finding:
    """One anomaly: its kind (``KINDS``), the ids it concerns (``stream_id``, ``connection``,
    ``utterance_id``, ``dialogue_id``, ``run`` ...) and what is wrong, in words."""

    kind: str
    ids: dict[str, str]
    detail: str


@dataclass
class Report:
    meeting_id: str
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # what was looked at, counted
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.findings

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def anomaly_types(self) -> list[str]:
        return [kind for kind in KINDS if self.of_kind(kind)]


def samples_text(start: int, end: int, sample_rate: int = 16000) -> str:
    """``samples 16000-17600 (1.000-1.100 s)``."""
    return f"samples {start}-{end} ({start / sample_rate:.3f}-{end / sample_rate:.3f} s)"


def to_json(report: Report) -> dict[str, Any]:
    """``{"meeting_id", "valid", "anomaly_types", "anomalies": {kind: [{"ids", "detail"}]}, "checked",
    "notes"}``: every finding, by kind."""
    return {
        "meeting_id": report.meeting_id,
        "valid": report.valid,
        "anomaly_types": report.anomaly_types,
        "anomalies": {
            kind: [{"ids": f.ids, "detail": f.detail} for f in report.of_kind(kind)]
            for kind in report.anomaly_types
        },
        "checked": report.checked,
        "notes": report.notes,
    }


def to_text(report: Report) -> str:
    """The report for a terminal: valid or not, what was checked, each kind's findings (at most
    ``SHOWN_PER_KIND`` each, with their ids), the notes."""
    verdict = "valid" if report.valid else f"INVALID: {', '.join(report.anomaly_types)}"
    lines = [f"meeting {report.meeting_id}: {verdict}"]
    if report.checked:
        lines.append("checked: " + ", ".join(f"{n} {what}" for what, n in report.checked.items()))
    for kind in report.anomaly_types:
        found = report.of_kind(kind)
        lines.append(f"{kind} ({len(found)}):")
        for finding in found[:SHOWN_PER_KIND]:
            ids = " ".join(f"{name}={value}" for name, value in finding.ids.items())
            lines.append(f"  {ids}: {finding.detail}")
        if len(found) > SHOWN_PER_KIND:
            lines.append(f"  ... and {len(found) - SHOWN_PER_KIND} more (--json lists them all)")
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)
