"""The topics table of docs/architecture.md, rendered from the registry, so the document cannot drift.

``python -m palaver.events.topics_table`` prints the table; ``--write docs/architecture.md`` replaces the
table between its markers in place. A unit test fails when the document's table differs from this one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from palaver.events.registry import (
    DAY_MS,
    DLQ_PARTITIONS,
    DLQ_REPLAYS,
    DLQ_RETENTION_MS,
    INGEST_TIMELINES,
    NAME_OWNERS,
    STATE_TOPICS,
    TOPICS,
    TopicSpec,
)

BEGIN = "<!-- topics table: generated from the registry by `python -m palaver.events.topics_table` -->"
END = "<!-- end of topics table -->"
REGENERATE = "python -m palaver.events.topics_table --write docs/architecture.md"

_HEADER = ("topic", "key", "partitions", "retention", "cleanup", "producers", "consumers", "events",
           "dead letters")  # fmt: skip


def _retention(ms: int) -> str:
    if ms < 0:
        return "forever"
    return f"{ms // DAY_MS} d" if ms % DAY_MS == 0 else f"{ms} ms"


STATE_DESCRIPTIONS = {
    DLQ_REPLAYS.name: "which dead letters were sent back (one mark per DLQ offset)",
    INGEST_TIMELINES.name: "each meeting's media timeline (`{\"epoch_ms\", \"active_ms\", \"streams\": {stream_id: [start_ms, "
                           "end_sample]}}`), read by every ingest process; first record wins",
    NAME_OWNERS.name: "each name's owner (`{\"owner\": user_id or null, \"offset\": last request applied}`) and a seed mark per partition",
}


def _row(spec: TopicSpec) -> tuple[str, ...]:
    events = ", ".join(f"`{s}`" for s in spec.schemas) or STATE_DESCRIPTIONS.get(spec.name, "the owner's state per key (JSON)")
    return (
        f"`{spec.name}`", spec.key, str(spec.partitions), _retention(spec.retention_ms), spec.cleanup_policy,
        ", ".join(spec.producers), ", ".join(c.label for c in spec.consumers) or "-", events,
        f"`{spec.dlq}`" if spec.dlq else "-",
    )  # fmt: skip


def _dlq_row() -> tuple[str, ...]:
    return (
        "`<topic>.dlq`", "the topic's", str(DLQ_PARTITIONS), _retention(DLQ_RETENTION_MS), "delete",
        "the topic's consumers in a group", "people (`palaver dlq`)",
        "the bad message as it came, with `dlq.topic/partition/offset`, `dlq.error.class/message`, `dlq.service`, `dlq.time` headers", "-",
    )  # fmt: skip


def render(topics: tuple[TopicSpec, ...] = (*TOPICS, *STATE_TOPICS, DLQ_REPLAYS)) -> str:
    """The Markdown table of ``topics`` (every event and state topic by default) plus one row for the
    dead-letter topics, without the markers."""
    rows = [_HEADER, tuple("---" for _ in _HEADER), *(_row(spec) for spec in topics), _dlq_row()]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def generated_part(document: str) -> str:
    """The text between the markers of ``document``. Raises ValueError when the markers are missing."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no topics table between {BEGIN!r} and {END!r}")
    return document[start + len(BEGIN) : end].strip("\n")


def with_table(document: str, table: str) -> str:
    """``document`` with ``table`` between its markers."""
    generated_part(document)  # the markers are there, in order
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return f"{document[:start]}\n{table}\n{document[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m palaver.events.topics_table", description=__doc__)
    parser.add_argument("--write", metavar="DOCUMENT", type=Path,
                        help="replace the table between the markers of this Markdown file")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write is None:
        print(render())
        return 0
    text = args.write.read_text()
    updated = with_table(text, render())
    if updated != text:
        args.write.write_text(updated)
    print(f"{args.write}: topics table {'updated' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
