"""The live hub's memory of each meeting's recent messages, so that a socket opening now gets what the
store may not hold yet.

A socket sends the store's snapshot, then live messages. The store writer inserts in batches (up to
``PALAVER_STORE_BATCH_WAIT_MS`` later, more under load), so an event published just before a socket
subscribed may be in neither: the hub gives a new subscriber the meeting's recent messages after the
snapshot. Only the newest message of each thing is kept (a dialogue's newest revision, a member's newest
state), which is all a client keeps, so the memory grows with what changed recently, not with how often.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from api.live_messages import LiveMessage

# How long a message is replayed to new sockets after it was published: the store writer's lag (one
# batch wait, 200 ms by default, plus an insert) many times over, so a busy store writer is covered too.
# A store that is further behind than this (catching up after an outage) leaves new sockets without the
# boxes it has not written yet, until they reconnect.
REPLAY_WINDOW_S = 60.0
# Most messages remembered per meeting (the oldest go first): a bound on memory when a meeting floods
# (a chat spam, a long speech revised word by word is one box). A normal minute of a meeting holds tens.
REPLAY_MAX_PER_MEETING = 500


class RecentMessages:
    """Each meeting's messages of the last ``window_s`` seconds, the newest per (type, key), at most
    ``max_per_meeting`` of them, in the order of their last change. Not thread-safe: the event loop's."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_per_meeting: int = REPLAY_MAX_PER_MEETING,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self._window_s = window_s
        self._max = max_per_meeting
        self._clock = clock
        self._meetings: dict[str, OrderedDict[tuple[str, str], tuple[float, LiveMessage]]] = {}

    def add(self, message: LiveMessage) -> None:
        """Remember ``message`` unless a newer one of its thing is remembered (a redelivery of an older
        revision): a replay never takes a client backwards, not even for a moment."""
        recent = self._meetings.setdefault(message.meeting_id, OrderedDict())
        key = (message.type, message.key)
        known = recent.get(key)
        if known is not None and known[1].order > message.order:
            return
        recent.pop(key, None)
        recent[key] = (self._clock(), message)
        if len(recent) > self._max:
            recent.popitem(last=False)

    def recent(self, meeting_id: str) -> list[LiveMessage]:
        """The meeting's remembered messages within the window, oldest change first."""
        recent = self._meetings.get(meeting_id)
        if not recent:
            return []
        oldest = self._clock() - self._window_s
        return [message for at, message in recent.values() if at >= oldest]

    def forget(self, meeting_id: str) -> None:
        """Drop everything of a meeting (it was deleted: nothing of it is replayed again)."""
        self._meetings.pop(meeting_id, None)

    def expire(self) -> None:
        """Drop what has left the window, and meetings with nothing left. Costs one look per meeting plus
        one per message dropped: call it often (the hub does after every poll)."""
        oldest = self._clock() - self._window_s
        for meeting_id in list(self._meetings):
            recent = self._meetings[meeting_id]
            while recent and next(iter(recent.values()))[0] < oldest:
                recent.popitem(last=False)
            if not recent:
                del self._meetings[meeting_id]

    def size(self) -> int:
        """Messages remembered, all meetings together."""
        return sum(len(recent) for recent in self._meetings.values())
