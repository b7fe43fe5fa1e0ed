"""A meeting's transcript as a file to download: ``GET /v1/meetings/{meeting_id}/export?format=...``.

What it holds: the meeting's final dialogues of one run (the newest unless ``run`` names another) with
human edits applied (deleted ones left out), read as ``GET .../dialogues`` reads them (``api.queries``).
Live dialogues, still being transcribed, are left out: the Markdown says how many, the JSON counts them
(``live_dialogues_left_out``). Speakers show by username; a deleted or unknown user by its id. The
formats themselves: ``api.export_formats``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api import queries
from api.access import NOT_FOUND, CanRead
from api.export_formats import (
    ExportDialogue,
    MeetingExport,
    Person,
    content_disposition,
    participants_and_speakers,
    to_json,
    to_markdown,
    to_srt,
    to_vtt,
)
from api.meetings import people_of
from palaver.store import Store

router = APIRouter(tags=["meetings"])

ExportFormat = Literal["markdown", "json", "srt", "vtt"]
MEDIA_TYPES: dict[str, str] = {
    "markdown": "text/markdown; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt; charset=utf-8",
}
EXTENSIONS = {"markdown": "md", "json": "json", "srt": "srt", "vtt": "vtt"}
RENDER: dict[str, Callable[[MeetingExport], str | bytes]] = {
    "markdown": to_markdown,
    "json": lambda export: orjson.dumps(to_json(export)),
    "srt": to_srt,
    "vtt": to_vtt,
}


class ExportedPerson(BaseModel):
    user_id: str
    name: str


class ExportedMeeting(BaseModel):
    meeting_id: str
    title: str
    owner_id: str
    created_at_ms: int
    scheduled_start_ms: int | None
    ended_at_ms: int | None
    participants: list[ExportedPerson] = Field(description="The meeting's people, then anyone else who spoke")


class ExportedDialogue(BaseModel):
    dialogue_id: str
    speaker_id: str
    speaker_name: str
    start_ms: int
    end_ms: int
    text: str = Field(description="The human's text when edited, else the machine's")
    edited: bool


class MeetingExportOut(BaseModel):
    """``format=json``: the meeting and its final dialogues in media order."""

    meeting: ExportedMeeting
    run: str | None
    live_dialogues_left_out: int = Field(description="Dialogues still being transcribed, not included")
    dialogues: list[ExportedDialogue]


_TEXT = {"schema": {"type": "string"}}
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": MeetingExportOut,
        "description": "The export, as an attachment: `text/markdown` (format=markdown), `application/json`, "
                       "`application/x-subrip` (srt) or `text/vtt`",
        "content": {"text/markdown": _TEXT, "application/x-subrip": _TEXT, "text/vtt": _TEXT},
        "headers": {"Content-Disposition": {
            "description": "`attachment` with a `filename` (ASCII) and a `filename*` (UTF-8) from the title",
            "schema": {"type": "string"}}},
    },
    **NOT_FOUND,
}  # fmt: skip


@router.get("/v1/meetings/{meeting_id}/export", response_class=Response, responses=EXPORT_RESPONSES)
async def export_meeting(
    request: Request,
    view: CanRead,
    format: Annotated[ExportFormat, Query(description="markdown, json, srt (SubRip) or vtt (WebVTT)")],
    run: Annotated[str | None, Query(description="Which run (engine:model); default the newest")] = None,
) -> Response:
    """The meeting's final dialogues, with human edits, as a file: Markdown (title, date, participants,
    a paragraph per dialogue), JSON, or subtitles (SRT, WebVTT: a long dialogue is cut into cues of at
    most two lines of 42 characters and about 7 s). Live dialogues are left out. A meeting nobody has
    spoken in yet gives an export without dialogues."""
    meeting = view.meeting
    store: Store = request.app.state.store
    run = run or await queries.latest_run(store, meeting.meeting_id)
    rows = await queries.dialogues(store, meeting.meeting_id, run) if run else []
    final = [r for r in rows if r["status"] == "final"]
    names = await request.app.state.users.display_names(request, [r["speaker_id"] for r in final])
    dialogues = tuple(ExportDialogue(r["dialogue_id"], r["speaker_id"], names[r["speaker_id"]], r["start_ms"],
                                     r["end_ms"], r["text"], r["edited"]) for r in final)  # fmt: skip
    people = [Person(p["user_id"], p["username"]) for p in await people_of(request, meeting)]
    export = MeetingExport(
        meeting.meeting_id, meeting.title, meeting.owner_id, meeting.created_at_ms, meeting.scheduled_start_ms,
        meeting.ended_at_ms, participants_and_speakers(people, dialogues), run, dialogues,
        live_left_out=sum(r["status"] == "live" for r in rows),
    )  # fmt: skip
    return Response(RENDER[format](export), media_type=MEDIA_TYPES[format],
                    headers={"Content-Disposition": content_disposition(meeting.title, EXTENSIONS[format])})  # fmt: skip
