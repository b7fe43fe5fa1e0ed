"""What ``palaver check`` reads of a meeting from ClickHouse: its utterances and its dialogues' newest
revisions, every run (reads use FINAL: a row written twice is one row, as every reader sees it)."""

from __future__ import annotations

from palaver.check.transcripts import DialogueSeen, UtteranceSeen
from palaver.store.client import Store


async def stored_utterances(store: Store, meeting_id: str) -> list[UtteranceSeen]:
    rows = await store.aquery(
        f"""SELECT utterance_id, run, stream_id, start_sample, end_sample, sample_rate
            FROM {store.database}.utterances FINAL WHERE meeting_id = {{m:String}}""",
        {"m": meeting_id},
    )
    return [UtteranceSeen(r["utterance_id"], r["run"], r["stream_id"], int(r["start_sample"]), int(r["end_sample"]),
                          "store", int(r["sample_rate"])) for r in rows]  # fmt: skip


async def stored_dialogues(store: Store, meeting_id: str) -> list[DialogueSeen]:
    rows = await store.aquery(
        f"""SELECT dialogue_id, run, start_ms, status, placed, position, utterance_ids
            FROM {store.database}.dialogues FINAL WHERE meeting_id = {{m:String}}""",
        {"m": meeting_id},
    )
    return [DialogueSeen(r["dialogue_id"], r["run"], int(r["start_ms"]), str(r["status"]), bool(r["placed"]),
                         int(r["position"]), tuple(r["utterance_ids"])) for r in rows]  # fmt: skip
