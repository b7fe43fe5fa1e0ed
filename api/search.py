"""Full-text search over the caller's meetings: ``GET /v1/search?q=...``.

A dialogue matches when its text (the human's where edited, else the machine's) holds every word of the
query, case-insensitively; results come best first (``api.search_queries``). Only meetings the caller
owns or is an active member of are searched, and an admin's own too unless it asks for ``all=true``, as
``GET /v1/meetings`` lists them; deleted meetings never appear. Each result links to the dialogue on the
web app's review page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api import fields
from api.access import directory
from api.identity import SignedIn
from api.meeting_state import role_in
from api.responses import declared
from api.search_queries import search_dialogues
from api.search_text import query_words, review_url, snippet

router = APIRouter(tags=["search"])
SearchQuery = Annotated[str, Query(min_length=1, max_length=200, pattern=fields.NOT_BLANK,
                                   description="Words that must all occur in a dialogue (any case)")]  # fmt: skip


class SearchHit(BaseModel):
    meeting_id: str
    meeting_title: str
    dialogue_id: str
    speaker_id: str
    speaker_name: str = Field(description="The speaker's username; a deleted or unknown user's id")
    start_ms: int = Field(description="Where the dialogue starts on the meeting's media timeline")
    snippet: str = Field(description="About 160 characters around the first match; plain text, not HTML")
    score: int = Field(description="Occurrences of the words, the words together in order counting ten")
    url: str = Field(description="The web app's review page at the dialogue")


class SearchResults(BaseModel):
    q: str
    words: list[str] = Field(description="The words searched for (the query split on whitespace)")
    limit: int
    results: list[SearchHit]


@router.get("/v1/search", response_model=SearchResults,
            responses=declared(401, 403, notes={403: "all=true needs an admin"}))  # fmt: skip
async def search(
    request: Request,
    caller: SignedIn,
    q: SearchQuery,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    all: Annotated[bool, Query(description="Every meeting (admins only)")] = False,
) -> dict[str, Any]:
    """Dialogues of the caller's meetings that hold every word of ``q`` (case-insensitively; words are
    separated by whitespace), most occurrences first (the words together in order count most), newer
    meetings first among equals."""
    if all and not caller.is_admin:
        raise HTTPException(status_code=403, detail="only admins search every meeting")
    words = query_words(q)
    rows = await search_dialogues(request.app.state.store, None if all else caller.user_id, words, limit)
    # What this process knows newer than the store (a meeting deleted, a member removed) has the last word.
    candidates = sorted({r["meeting_id"] for r in rows})
    meetings = await directory(request).meetings_by_id(request, candidates)
    members = await directory(request).memberships(request, caller.user_id, candidates)
    titles = {m: meeting.title for m, meeting in meetings.items()
              if role_in(meeting, members.get(m), caller.user_id, caller.is_admin) is not None}  # fmt: skip
    rows = [r for r in rows if r["meeting_id"] in titles]
    names = await request.app.state.users.display_names(request, [r["speaker_id"] for r in rows])
    results = [{"meeting_id": r["meeting_id"], "meeting_title": titles[r["meeting_id"]],
                "dialogue_id": r["dialogue_id"], "speaker_id": r["speaker_id"], "speaker_name": names[r["speaker_id"]],
                "start_ms": r["start_ms"], "snippet": snippet(r["shown_text"], words), "score": r["score"],
                "url": review_url(r["meeting_id"], r["dialogue_id"])} for r in rows]  # fmt: skip
    return {"q": q, "words": words, "limit": limit, "results": results}
