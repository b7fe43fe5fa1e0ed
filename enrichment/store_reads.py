"""What enrichment reads from the store: a meeting's placed dialogues as people will read them (the latest
human edit of each overlaid, deleted ones left out), its speakers' and members' names, its title, agenda
and date. Read at the moment a job runs, so a correction made during the meeting is in the summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from enrichment.model import Dialogue, MeetingTranscript
from palaver.runs import live_run_sql
from palaver.store import Store
from palaver.store.edit_overlay import MACHINE_EDITOR_PREFIX, latest_edits_sql
from palaver.store.runs import usernames


@dataclass(frozen=True)
class MeetingText:
    transcript: MeetingTranscript
    user_ids: dict[str, str]  # name -> user id of everyone the transcript names as a speaker or participant
    placed: int  # the placed dialogues the store held (before edits removed any)


async def meeting_text(store: Store, meeting_id: str, run: str) -> MeetingText:
    db = store.database
    dialogues = await store.aquery(
        f"""SELECT d.dialogue_id AS dialogue_id, d.speaker_id AS speaker_id, d.start_ms AS start_ms,
                   d.end_ms AS end_ms, d.dialogue_text AS text, e.action AS action, e.edited AS edited
            FROM (SELECT dialogue_id, speaker_id, start_ms, end_ms, dialogue_text FROM {db}.dialogues FINAL
                  WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND status = 'final' AND placed) AS d
            LEFT JOIN (SELECT target_id, edit_action AS action, edit_text AS edited
                       FROM ({latest_edits_sql(db, "dialogue")})) AS e ON e.target_id = d.dialogue_id
            ORDER BY start_ms, speaker_id, dialogue_id""",
        {"m": meeting_id, "r": run},
    )
    meetings = await store.aquery(
        f"""SELECT title, agenda, created_at_ms,
                   if(isNull(date_time), NULL, toUnixTimestamp64Milli(date_time)) AS scheduled_ms
            FROM {db}.meetings FINAL WHERE meeting_id = {{m:String}}""",
        {"m": meeting_id},
    )
    members = await store.aquery(
        f"""SELECT user_id FROM {db}.meeting_members FINAL
            WHERE meeting_id = {{m:String}} AND role != 'viewer' ORDER BY user_id""",
        {"m": meeting_id},
    )
    speaker_ids = list(dict.fromkeys(r["speaker_id"] for r in dialogues))
    people_ids = list(dict.fromkeys([*speaker_ids, *(r["user_id"] for r in members)]))
    names = await usernames(store, people_ids) if people_ids else {}
    turns = []
    for row in dialogues:
        if row["action"] == "delete":
            continue
        text = row["edited"] if row["action"] == "edit" else row["text"]
        speaker = names.get(row["speaker_id"], row["speaker_id"])
        turns.append(Dialogue(dialogue_id=row["dialogue_id"], speaker=speaker, start_ms=row["start_ms"],
                              end_ms=max(row["end_ms"], row["start_ms"]), text=text))  # fmt: skip
    meeting = meetings[0] if meetings else {"title": "", "agenda": [], "created_at_ms": 0, "scheduled_ms": None}
    when = meeting["scheduled_ms"] or meeting["created_at_ms"]
    transcript = MeetingTranscript(
        dialogues=tuple(turns),
        participants=tuple(dict.fromkeys(names.get(u, u) for u in people_ids)),
        meeting_date=datetime.fromtimestamp(when / 1000, UTC).date() if when else None,
        agenda=tuple(meeting["agenda"]),
        title=meeting["title"],
    )
    return MeetingText(transcript, {names.get(u, u): u for u in people_ids}, len(dialogues))


async def correctable(store: Store, meeting_id: str, run: str, dialogue_id: str | None) -> list[tuple[str, str]]:
    """(dialogue id, the machine's text) of the run's placed dialogues (or the one ``dialogue_id``) that no
    human has edited: a human's text is never auto-corrected, and a machine edit would not show over it."""
    db = store.database
    return [(r["dialogue_id"], r["text"]) for r in await store.aquery(
        f"""SELECT d.dialogue_id AS dialogue_id, d.dialogue_text AS text
            FROM (SELECT dialogue_id, dialogue_text, start_ms FROM {db}.dialogues FINAL
                  WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND status = 'final' AND placed
                        AND ({{d:String}} = '' OR dialogue_id = {{d:String}})) AS d
            LEFT JOIN (SELECT target_id, countIf(NOT startsWith(editor, {{machine:String}})) AS human
                       FROM {db}.edits FINAL WHERE meeting_id = {{m:String}} AND target_kind = 'dialogue'
                       GROUP BY target_id) AS e ON e.target_id = d.dialogue_id
            WHERE e.human = 0 ORDER BY d.start_ms, d.dialogue_id""",
        {"m": meeting_id, "r": run, "d": dialogue_id or "", "machine": MACHINE_EDITOR_PREFIX},
    )]  # fmt: skip


async def first_live_run(store: Store, meeting_id: str) -> str | None:
    """The meeting's first live run that placed a dialogue (the one enrichment follows), or None when the
    store has none (nobody has spoken yet)."""
    rows = await store.aquery(
        f"""SELECT run FROM {store.database}.dialogues FINAL
            WHERE meeting_id = {{m:String}} AND status = 'final' AND placed AND {live_run_sql()}
            GROUP BY run ORDER BY min(inserted_at), run LIMIT 1""",
        {"m": meeting_id},
    )
    return rows[0]["run"] if rows else None
