"""Unique names (usernames, emails) as claims decided in one place, the name registry (api/name_registry.py).

A name is claimed by its normalized form, ``"username:alice"`` or ``"email:ana@example.com"`` (lowercase,
see ``api.names``), which is also the message key: every claim of one name goes to one partition of the
``name.claims`` topic, and one consumer of the ``names`` group decides them in log order. A claim names the
user who wants the name; it is granted when the name is free or already that user's (a retry), refused
otherwise. The decision goes to the ``name.decisions`` topic, where the process that asked matches its
``request_id``. A release frees a name its owner no longer uses (a rename, a delete, the other half of a
refused registration); releasing a name one does not own does nothing.
"""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class NameClaimV1(EventV):
    event: Literal["name.claim"] = "name.claim"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("name.claim", request_id)
    request_id: str  # chosen by the asker, unique per request; the decision carries it back
    name: str  # normalized: "username:<lowercase>" or "email:<lowercase address>"
    user_id: str  # who wants it
    requested_at_ms: int


class NameReleaseV1(EventV):
    event: Literal["name.release"] = "name.release"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("name.release", request_id)
    request_id: str
    name: str
    user_id: str  # frees the name only when this user owns it
    requested_at_ms: int


class NameDecisionV1(EventV):
    event: Literal["name.decision"] = "name.decision"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("name.decision", request_id)
    request_id: str  # the claim's
    name: str
    user_id: str  # who asked
    granted: bool
    decided_at_ms: int
