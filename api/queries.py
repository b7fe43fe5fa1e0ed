"""Read-model queries. Every read uses FINAL, so no reader ever sees two versions of one row."""

from __future__ import annotations

from typing import Any

from palaver.store import Store


async def latest_run(store: Store, meeting_id: str) -> str | None:
    rows = await store.aquery(
        f"SELECT run FROM {store.database}.dialogues WHERE meeting_id = {{m:String}} "
        "ORDER BY inserted_at DESC LIMIT 1",
        {"m": meeting_id},
    )
    return rows[0]["run"] if rows else None


async def dialogues(store: Store, meeting_id: str, run: str) -> list[dict[str, Any]]:
    return await store.aquery(
        f"""SELECT dialogue_id, speaker_id, start_ms, end_ms, dialogue_text AS text, status, revision, position,
                   run, utterance_ids
            FROM {store.database}.dialogues FINAL
            WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND status != 'retracted'
            ORDER BY start_ms, speaker_id, dialogue_id""",
        {"m": meeting_id, "r": run},
    )
