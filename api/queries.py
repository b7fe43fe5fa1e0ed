"""Read-model queries. Every read uses FINAL, so no reader ever sees two versions of one row, and overlays
the latest human edit of each target on the machine's text."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from palaver import ids
from palaver.events.edits_v1 import task_status
from palaver.runs import live_run_sql
from palaver.store import Store


def latest_edits_sql(db: str, kind: str, meetings: str = "meeting_id = {m:String}") -> str:
    """A query of the latest edit of each target of ``kind`` in the meetings that the condition
    ``meetings`` picks (by default the one ``{m:String}``): ``meeting_id, target_id, edit_action``
    (``edit``, ``delete``, ``reset``) and ``edit_text``."""
    return f"""
        SELECT meeting_id, target_id,
               argMax(action, (edited_at_ms, edit_id)) AS edit_action,
               argMax(ifNull(text, ''), (edited_at_ms, edit_id)) AS edit_text
        FROM {db}.edits FINAL
        WHERE {meetings} AND target_kind = '{kind}'
        GROUP BY meeting_id, target_id
    """


async def latest_run(store: Store, meeting_id: str) -> str | None:
    """The run the read routes show by default: the live run that wrote the meeting's newest dialogue row;
    a replay's (``palaver.runs``) only when the meeting has no live run. A replay never takes a meeting's
    view over: its dialogues are read with ``?run=``."""
    rows = await store.aquery(
        f"SELECT run FROM {store.database}.dialogues WHERE meeting_id = {{m:String}} "
        f"ORDER BY {live_run_sql()} DESC, inserted_at DESC LIMIT 1",
        {"m": meeting_id},
    )
    return rows[0]["run"] if rows else None


async def dialogues(store: Store, meeting_id: str, run: str, placed_held: int = 0) -> list[dict[str, Any]]:
    """Dialogues in media order; an edited dialogue shows the human's text (``edited`` true), a deleted
    one is left out. ``utterances`` are the machine's, as its newest revision carried them. ``placed_held``
    leaves out the placed dialogues of ``position`` below it (those a reconnecting live client holds: their
    place is fixed, so the first N are the same N for everyone)."""
    rows = await store.aquery(
        f"""SELECT d.dialogue_id AS dialogue_id, d.speaker_id AS speaker_id, d.start_ms AS start_ms,
                   d.end_ms AS end_ms, d.dialogue_text AS machine_text, d.status AS status,
                   d.revision AS revision, d.position AS position, d.placed AS placed, d.run AS run,
                   d.utterance_ids AS utterance_ids,
                   d.utterances AS utterances, e.edit_action AS edit_action, e.edit_text AS edit_text
            FROM (SELECT * FROM {store.database}.dialogues FINAL
                  WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND status != 'retracted'
                    AND NOT (placed AND position < {{held:UInt32}})) AS d
            LEFT JOIN ({latest_edits_sql(store.database, "dialogue")}) AS e
                ON e.target_id = d.dialogue_id
            ORDER BY start_ms, speaker_id, dialogue_id""",
        {"m": meeting_id, "r": run, "held": placed_held},
    )
    out = []
    for row in rows:
        action = row.pop("edit_action")
        edited_text = row.pop("edit_text")
        if action == "delete":
            continue
        row["edited"] = action == "edit"
        row["text"] = edited_text if action == "edit" else row["machine_text"]
        row["utterances"] = orjson.loads(row["utterances"] or "[]")
        out.append(row)
    return out


async def exists(store: Store, table: Literal["dialogues", "action_items"], meeting_id: str, row_id: str) -> bool:
    """Whether the meeting has a row with this id (``dialogue_id`` or ``action_item_id``) in the table."""
    column = {"dialogues": "dialogue_id", "action_items": "action_item_id"}[table]
    rows = await store.aquery(
        f"SELECT count() AS n FROM {store.database}.{table} WHERE meeting_id = {{m:String}} AND {column} = {{i:String}}",
        {"m": meeting_id, "i": row_id},
    )
    return bool(rows[0]["n"])


async def edit_history(store: Store, meeting_id: str, kind: str, target_id: str) -> list[dict[str, Any]]:
    rows = await store.aquery(
        f"""SELECT edit_id, action, text, fields, editor, edited_at_ms
            FROM {store.database}.edits FINAL
            WHERE meeting_id = {{m:String}} AND target_kind = {{k:String}} AND target_id = {{t:String}}
            ORDER BY edited_at_ms, edit_id""",
        {"m": meeting_id, "k": kind, "t": target_id},
    )
    for row in rows:
        row["fields"] = orjson.loads(row["fields"] or "{}")
    return rows


async def transcript(store: Store, meeting_id: str, run: str) -> dict[str, Any] | None:
    rows = await store.aquery(
        f"""SELECT transcript_id, meeting_id, run, raw_transcript, processed_transcript, language, revision,
                   watermark_ms
            FROM {store.database}.transcripts FINAL
            WHERE transcript_id = {{t:String}} AND meeting_id = {{m:String}} AND run = {{r:String}}""",
        {"t": ids.transcript_id(meeting_id, run), "m": meeting_id, "r": run},
    )
    if not rows:
        return None
    row = rows[0]
    edits = await store.aquery(
        latest_edits_sql(store.database, "transcript"), {"m": meeting_id}
    )
    action = edits[0]["edit_action"] if edits else ""
    row["edited"] = action == "edit"
    row["deleted"] = action == "delete"
    if action == "edit":
        row["processed_transcript"] = edits[0]["edit_text"]
    return row


async def action_items(store: Store, meeting_id: str) -> list[dict[str, Any]]:
    """The meeting's action items with human edits folded in, in order: an edit changes the fields it
    names, a reset drops earlier edits, a delete hides the item (until a later edit or reset)."""
    rows = await store.aquery(
        f"""SELECT action_item_id, run, description, assigned_to, status, priority,
                   toString(start_date) AS start_date, toString(due_date) AS due_date, source_dialogue_id, revision
            FROM {store.database}.action_items FINAL WHERE meeting_id = {{m:String}}
            ORDER BY action_item_id""",
        {"m": meeting_id},
    )
    edits = await store.aquery(
        f"""SELECT target_id, action, fields FROM {store.database}.edits FINAL
            WHERE meeting_id = {{m:String}} AND target_kind = 'action_item' ORDER BY edited_at_ms, edit_id""",
        {"m": meeting_id},
    )
    overlay: dict[str, tuple[bool, dict[str, Any]]] = {}
    for e in edits:
        deleted, fields = overlay.get(e["target_id"], (False, {}))
        if e["action"] == "reset":
            overlay[e["target_id"]] = (False, {})
        elif e["action"] == "delete":
            overlay[e["target_id"]] = (True, fields)
        else:
            overlay[e["target_id"]] = (False, {**fields, **orjson.loads(e["fields"] or "{}")})
    out = []
    for row in rows:
        deleted, fields = overlay.get(row["action_item_id"], (False, {}))
        if deleted:
            continue
        row.update(fields)
        row["status"] = task_status(row["status"])  # an edit stored with the old word for pending
        row["edited"] = bool(fields)
        out.append(row)
    return out



USER_FIELDS = """user_id, username, email, password_hash, role, profile_pic_url, deleted,
                 toUnixTimestamp64Milli(created_at) AS created_at_ms,
                 toUnixTimestamp64Milli(updated_at) AS updated_at_ms, version AS user_version"""


async def users_by_id(store: Store, user_ids: list[str]) -> list[dict[str, Any]]:
    """The newest stored state of the given users, deleted ones included: the caller merges them with its
    own writes."""
    return await store.aquery(
        f"SELECT {USER_FIELDS} FROM {store.database}.users FINAL WHERE has({{ids:Array(String)}}, user_id)",
        {"ids": user_ids},
    )


async def users_named(store: Store, name: str) -> list[dict[str, Any]]:
    """Stored users whose username or email is ``name`` (lowercase), deleted ones included."""
    return await store.aquery(
        f"""SELECT {USER_FIELDS} FROM {store.database}.users FINAL
            WHERE lower(username) = {{n:String}} OR lower(email) = {{n:String}}""",
        {"n": name},
    )


async def users(store: Store, limit: int, offset: int, username: str | None = None,
                email: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Live (not deleted) users ordered by username, optionally only the one with this username or email."""
    rows = await store.aquery(
        f"""SELECT {USER_FIELDS} FROM {store.database}.users FINAL
            WHERE deleted = 0
              AND ({{u:String}} = '' OR lower(username) = lower({{u:String}}))
              AND ({{e:String}} = '' OR lower(email) = lower({{e:String}}))
            ORDER BY lower(username), user_id LIMIT {{l:UInt32}} OFFSET {{o:UInt32}}""",
        {"u": username or "", "e": email or "", "l": limit, "o": offset},
    )
    return rows


async def meeting_known(store: Store, meeting_id: str) -> bool:
    """Whether the meeting exists: a stream of it has started (or the API created it)."""
    rows = await store.aquery(
        f"SELECT count() AS n FROM {store.database}.meetings WHERE meeting_id = {{m:String}}", {"m": meeting_id}
    )
    return bool(rows[0]["n"])


async def chat_messages(store: Store, meeting_id: str, since_ms: int, limit: int) -> list[dict[str, Any]]:
    """The meeting's chat messages sent at or after ``since_ms``, oldest first."""
    return await store.aquery(
        f"""SELECT message_id, meeting_id, user_id, text, toUnixTimestamp64Milli(sent_at) AS sent_at_ms
            FROM {store.database}.chat_messages FINAL
            WHERE meeting_id = {{m:String}} AND sent_at >= fromUnixTimestamp64Milli({{s:Int64}})
            ORDER BY sent_at, message_id LIMIT {{l:UInt32}}""",
        {"m": meeting_id, "s": since_ms, "l": limit},
    )


async def latest_chat_messages(store: Store, meeting_id: str, since_ms: int, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` of the meeting's chat messages sent at or after ``since_ms``, oldest first."""
    rows = await store.aquery(
        f"""SELECT message_id, meeting_id, user_id, text, toUnixTimestamp64Milli(sent_at) AS sent_at_ms
            FROM {store.database}.chat_messages FINAL
            WHERE meeting_id = {{m:String}} AND sent_at >= fromUnixTimestamp64Milli({{s:Int64}})
            ORDER BY sent_at DESC, message_id DESC LIMIT {{l:UInt32}}""",
        {"m": meeting_id, "s": since_ms, "l": limit},
    )
    return rows[::-1]


async def chat_message_by_key(store: Store, meeting_id: str, key: str) -> dict[str, Any] | None:
    """The meeting's chat message posted with this Idempotency-Key (the first, should there be several),
    with the fields of a chat response; None when the key was not used in the meeting."""
    rows = await store.aquery(
        f"""SELECT message_id, meeting_id, user_id, text, toUnixTimestamp64Milli(sent_at) AS sent_at_ms
            FROM {store.database}.chat_messages FINAL
            WHERE meeting_id = {{m:String}} AND idempotency_key = {{k:String}}
            ORDER BY sent_at, message_id LIMIT 1""",
        {"m": meeting_id, "k": key},
    )
    return rows[0] if rows else None


async def edit_by_key(store: Store, meeting_id: str, key: str) -> dict[str, Any] | None:
    """The meeting's edit made with this Idempotency-Key (the first, should there be several), as its
    ``edits`` row; None when the key was not used in the meeting."""
    rows = await store.aquery(
        f"""SELECT edit_id, meeting_id, target_kind, target_id, action, text, fields, editor, edited_at_ms,
                   idempotency_key
            FROM {store.database}.edits FINAL
            WHERE meeting_id = {{m:String}} AND idempotency_key = {{k:String}}
            ORDER BY edited_at_ms, edit_id LIMIT 1""",
        {"m": meeting_id, "k": key},
    )
    return rows[0] if rows else None
