"""The merger's word that a meeting's transcript is final up to ``watermark_ms`` for one run: every
dialogue before it is placed (``DialogueUpdateV1.placed``: its words and its position will not change).
``final_dialogues`` counts them (the merged transcript's revision); dialogues whose words are final but
that are not placed yet are not counted."""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class MeetingWatermarkV1(EventV):
    event: Literal["meeting.watermark"] = "meeting.watermark"
    version: Literal[1] = 1
    event_id: str
    meeting_id: str
    run: str
    watermark_ms: int  # -1 until every active stream has settled somewhere; 2**62 once all streams stopped
    final_dialogues: int
