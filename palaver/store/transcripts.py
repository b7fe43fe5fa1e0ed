"""The merged transcript of a meeting, rebuilt in ClickHouse from its placed dialogues in media order (final,
and the watermark has passed them: a dialogue whose words are final but whose place may still change waits).

``raw_transcript`` is the machine's text; ``processed_transcript`` overlays the edit a reader sees of each
dialogue (``palaver.store.edit_overlay``) (an edited text, or the dialogue removed). Each line names its speaker by username (the speaker
id is a user id), as the user was called when the transcript was rebuilt. The revision is the number of placed dialogues, so it
grows with the watermark; the row's version is the rebuild time, so the newest rebuild wins.
"""

from __future__ import annotations

from palaver import ids
from palaver.store.client import Store
from palaver.store.edit_overlay import latest_edits_sql

_REBUILD = """
INSERT INTO {db}.transcripts
    (transcript_id, meeting_id, run, raw_transcript, processed_transcript, language, revision, watermark_ms, version)
SELECT {{tid:String}}, {{m:String}}, {{run:String}},
       arrayStringConcat(arrayMap(x -> x.4, lines), '\\n'),
       arrayStringConcat(arrayFilter(l -> l != '', arrayMap(x -> x.5, lines)), '\\n'),
       (SELECT any(language) FROM {db}.utterances WHERE meeting_id = {{m:String}} AND run = {{run:String}}),
       length(lines), {{wm:Int64}}, toUInt64(toUnixTimestamp64Milli(now64(3)))
FROM (
    SELECT arraySort(x -> (x.1, x.2, x.3), groupArray((
               d.start_ms, d.speaker_id, d.dialogue_id,
               concat(if(u.username = '', d.speaker_id, u.username), ': ', d.dialogue_text),
               multiIf(e.action = 'delete', '', e.action = 'edit',
                       concat(if(u.username = '', d.speaker_id, u.username), ': ', e.edited),
                       concat(if(u.username = '', d.speaker_id, u.username), ': ', d.dialogue_text))
           ))) AS lines
    FROM (SELECT dialogue_id, speaker_id, dialogue_text, start_ms FROM {db}.dialogues FINAL
          WHERE meeting_id = {{m:String}} AND run = {{run:String}} AND status = 'final' AND placed) AS d
    LEFT JOIN (SELECT user_id, argMax(username, version) AS username FROM {db}.users
               GROUP BY user_id) AS u ON u.user_id = d.speaker_id
    LEFT JOIN (SELECT target_id, edit_action AS action, edit_text AS edited FROM ({edits})) AS e
               ON e.target_id = d.dialogue_id
)
"""


async def rebuild_transcript(store: Store, meeting_id: str, run: str, watermark_ms: int | None = None) -> None:
    """Rebuild one (meeting, run) transcript. ``watermark_ms`` None keeps the stored one (a human edit)."""
    if watermark_ms is None:
        rows = await store.aquery(
            f"SELECT max(watermark_ms) AS wm FROM {store.database}.transcripts "
            "WHERE meeting_id = {m:String} AND run = {run:String}",
            {"m": meeting_id, "run": run},
        )
        watermark_ms = int(rows[0]["wm"]) if rows else -1
    await store.acommand(
        _REBUILD.format(db=store.database, edits=latest_edits_sql(store.database, "dialogue")),
        {"tid": ids.transcript_id(meeting_id, run), "m": meeting_id, "run": run, "wm": watermark_ms},
    )


async def runs_of(store: Store, meeting_id: str) -> list[str]:
    rows = await store.aquery(
        f"SELECT DISTINCT run FROM {store.database}.dialogues WHERE meeting_id = {{m:String}}", {"m": meeting_id}
    )
    return [r["run"] for r in rows]
