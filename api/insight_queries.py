"""Read-model queries of enrichment's results (``meeting_insights``, written by the store writer from
``meeting.insights`` events; ``palaver.store.rows``) and the human edits of their action items.

Which result a read shows: one enrichment run (``<transcript run>/<backend>``) of the meeting, the newest
revision of it (``FINAL``: the table's version is the revision). Without ``?run=`` it is the run whose
transcript run is a live run (``palaver.runs``) with the newest ``produced_at_ms``; a replay's result only
when the meeting has no live one, as the transcript routes choose their run. The action items shown are
those of that run's newest result only: a task the newer result no longer lists is gone, a task it lists
again keeps its id and so its human edits.

Everything a read shows of a result comes from its one ``meeting_insights`` row (the whole result: summary,
action items, keywords, mood, agenda, metrics), so a read never mixes two revisions while the store writer
is between its inserts into ``meeting_insights``, ``summaries`` and ``action_items`` (those two tables serve
edits, which check that an item exists, and search).
"""

from __future__ import annotations

from typing import Any

import orjson

from palaver.events.edits_v1 import task_priority, task_status
from palaver.runs import is_replay, live_run_sql
from palaver.store import Store

RESULT_FIELDS = """enrichment_id, meeting_id, run, transcript_run, backend, trigger, final, transcript_revision,
                   revision, fallback, produced_at_ms"""


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["final"] = bool(row["final"])
    row["fallback"] = orjson.loads(row["fallback"]) if row["fallback"] else None
    row["live"] = not is_replay(row["transcript_run"])
    if "result" in row:
        row.update({"summary": {"brief": "", "detailed": ""}, "action_items": [],
                    **orjson.loads(row.pop("result") or "{}")})  # fmt: skip
    return row


async def results(store: Store, meeting_id: str, with_result: bool = False) -> list[dict[str, Any]]:
    """The newest result of each enrichment run of the meeting, the default one first (live transcript runs
    first, then the newest ``produced_at_ms``). ``with_result`` adds keywords, mood, agenda and metrics."""
    extra = ", result" if with_result else ""
    rows = await store.aquery(
        f"""SELECT {RESULT_FIELDS}{extra} FROM {store.database}.meeting_insights FINAL
            WHERE meeting_id = {{m:String}}
            ORDER BY {live_run_sql("transcript_run")} DESC, produced_at_ms DESC, run""",
        {"m": meeting_id},
    )
    return [_decoded(row) for row in rows]


def chosen(rows: list[dict[str, Any]], run: str | None) -> dict[str, Any] | None:
    """The result ``run`` names, or the default one (the first of ``results``) when ``run`` is None."""
    if run is None:
        return rows[0] if rows else None
    return next((row for row in rows if row["run"] == run), None)


async def result(store: Store, meeting_id: str, run: str | None) -> dict[str, Any] | None:
    """The whole newest result of ``run`` (or of the default run), None when there is none."""
    return chosen(await results(store, meeting_id, with_result=True), run)


async def action_items(store: Store, found: dict[str, Any]) -> list[dict[str, Any]]:
    """The action items of the result ``found`` (a row of ``results`` with its result), in the result's
    order, with the meeting's human edits folded in (``fold_edits``)."""
    edits = await store.aquery(
        f"""SELECT target_id, action, fields FROM {store.database}.edits FINAL
            WHERE meeting_id = {{m:String}} AND target_kind = 'action_item' ORDER BY edited_at_ms, edit_id""",
        {"m": found["meeting_id"]},
    )
    return fold_edits([item_out(item, found["run"], found["revision"]) for item in found["action_items"]], edits)


def item_out(item: dict[str, Any], run: str, revision: int) -> dict[str, Any]:
    """An action item of a result (``InsightActionItem``'s JSON) with the fields of an ``action_items`` row."""
    dialogue_ids = list(item.get("dialogue_ids", ()))
    return {"action_item_id": item["action_item_id"], "run": run, "description": item["description"],
            "assigned_to": item.get("assignee", ""), "assignee_id": item.get("assignee_id", ""),
            "status": item.get("status", "pending"), "priority": item.get("priority", "normal"),
            "start_date": item.get("start_date"), "due_date": item.get("due_date"),
            "source_dialogue_id": dialogue_ids[0] if dialogue_ids else "", "dialogue_ids": dialogue_ids,
            "revision": revision}  # fmt: skip


def fold_edits(items: list[dict[str, Any]], edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items with their edits (``target_id, action, fields`` rows, oldest first) applied in order: an edit
    changes the fields it names, a reset drops earlier edits, a delete hides the item (until a later edit
    or reset). ``edited``: some field is the human's."""
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
    for item in items:
        deleted, fields = overlay.get(item["action_item_id"], (False, {}))
        if deleted:
            continue
        shown = {**item, **fields, "edited": bool(fields)}
        # Edits are kept forever: ones made with an older word for a status or priority read in today's.
        for key, current in (("status", task_status), ("priority", task_priority)):
            if key in shown:
                shown[key] = current(shown[key])
        out.append(shown)
    return out
