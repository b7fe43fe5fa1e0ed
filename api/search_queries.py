"""The read query behind ``GET /v1/search``: dialogues of the caller's meetings whose text holds every word.

It reads what ``GET /v1/meetings/{m}/dialogues`` shows: the newest run of each meeting (the live run of the
meeting's newest dialogue row, as ``api.queries.latest_run``), dialogues not retracted, the human's text
where edited, edited-away (deleted) dialogues left out. The meetings are those of
``api.meeting_queries.meetings_of_sql`` (or every live one): deleted and purged meetings never match.
User text only ever reaches ClickHouse as a query parameter."""

from __future__ import annotations

from typing import Any

from api.meeting_queries import all_meetings_sql, meetings_of_sql
from palaver.runs import live_run_sql
from palaver.store import Store
from palaver.store.edit_overlay import latest_edits_sql

PHRASE_WEIGHT = 10  # an occurrence of the query as typed counts as this many occurrences of single words


async def search_dialogues(store: Store, user_id: str | None, words: list[str], limit: int) -> list[dict[str, Any]]:
    """Dialogues whose text holds every one of ``words`` (case-insensitively, as substrings), best first:
    ``meeting_id, created_at_ms`` (the meeting's), ``dialogue_id, speaker_id, start_ms, text, score``.

    ``score`` = occurrences of the words, plus ``PHRASE_WEIGHT`` per occurrence of the words together in
    order (several words only); ties go to newer meetings, then earlier dialogues. ``user_id`` None
    searches every live meeting (an admin's ``all=true``), else the meetings of that user."""
    db = store.database
    scope = all_meetings_sql(db) if user_id is None else meetings_of_sql(db)
    in_scope = "meeting_id IN (SELECT meeting_id FROM scope)"
    return await store.aquery(
        f"""WITH scope AS ({scope})
            SELECT d.meeting_id AS meeting_id, s.created_at_ms AS created_at_ms, d.dialogue_id AS dialogue_id,
                   d.speaker_id AS speaker_id, d.start_ms AS start_ms,
                   if(e.edit_action = 'edit', e.edit_text, d.dialogue_text) AS shown_text,
                   arraySum(w -> countSubstringsCaseInsensitiveUTF8(shown_text, w), {{words:Array(String)}})
                     + if(length({{words:Array(String)}}) > 1,
                          {PHRASE_WEIGHT} * countSubstringsCaseInsensitiveUTF8(shown_text, {{phrase:String}}), 0)
                     AS score
            FROM (SELECT meeting_id, dialogue_id, speaker_id, start_ms, dialogue_text, run
                  FROM {db}.dialogues FINAL WHERE {in_scope} AND status != 'retracted') AS d
            JOIN (SELECT meeting_id, argMax(run, ({live_run_sql()}, inserted_at)) AS newest_run FROM {db}.dialogues
                  WHERE {in_scope} GROUP BY meeting_id) AS r
                ON r.meeting_id = d.meeting_id AND r.newest_run = d.run
            JOIN scope AS s ON s.meeting_id = d.meeting_id
            LEFT JOIN ({latest_edits_sql(db, "dialogue", in_scope)}) AS e
                ON e.meeting_id = d.meeting_id AND e.target_id = d.dialogue_id
            WHERE e.edit_action != 'delete'
              AND arrayAll(w -> positionCaseInsensitiveUTF8(shown_text, w) > 0, {{words:Array(String)}})
            ORDER BY score DESC, created_at_ms DESC, start_ms, dialogue_id
            LIMIT {{limit:UInt32}}""",
        {"u": user_id or "", "words": words, "phrase": " ".join(words), "limit": limit},
    )
