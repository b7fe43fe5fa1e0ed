"""Which edit of a target a reader sees: the one place that decides it (the read routes, search, exports, the
merged transcript's rebuild and enrichment all overlay through it).

The latest human edit wins; a machine's edit (auto-correct, whose editor is ``palaver:<what>``) shows only
where no human has edited the target, so a human edit always wins, whatever came after it. Among edits of
one kind, the latest (``edited_at_ms``, then ``edit_id``) wins; a ``reset`` is an edit too (back to the
machine's raw text)."""

from __future__ import annotations

MACHINE_EDITOR_PREFIX = "palaver:"
# argMax key of the edit a reader sees: human before machine, then the latest.
LATEST_EDIT = f"(NOT startsWith(editor, '{MACHINE_EDITOR_PREFIX}'), edited_at_ms, edit_id)"


def machine_editor(what: str) -> str:
    """The editor of a machine's edits: ``palaver:autocorrect``."""
    return f"{MACHINE_EDITOR_PREFIX}{what}"


def latest_edits_sql(db: str, kind: str, meetings: str = "meeting_id = {m:String}") -> str:
    """A query of the edit a reader sees of each target of ``kind`` in the meetings that the condition
    ``meetings`` picks (by default the one ``{m:String}``): ``meeting_id, target_id, edit_action``
    (``edit``, ``delete``, ``reset``) and ``edit_text``."""
    return f"""
        SELECT meeting_id, target_id,
               argMax(action, {LATEST_EDIT}) AS edit_action,
               argMax(ifNull(text, ''), {LATEST_EDIT}) AS edit_text
        FROM {db}.edits FINAL
        WHERE {meetings} AND target_kind = '{kind}'
        GROUP BY meeting_id, target_id
    """
