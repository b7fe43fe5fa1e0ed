"""A web app (no lifespan: no Kafka) with a signed-in caller, for unit tests of what the API answers once
the caller is known: the store is a fake with no rows, the caller and its meeting ``m1`` live in the
directories' own recent writes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.access import MeetingDirectory
from api.identity import Sessions, start_session
from api.meeting_state import MeetingRecord
from api.passwords import hash_password
from api.user_state import new_user
from api.users import UserDirectory
from palaver.store.client import ClientPool, Store

CALLER_ID = "usr_" + "a" * 24
MEETING_ID = "m1"


class _NoRows:
    """A ClickHouse client whose every query finds nothing."""

    column_names = ()
    result_rows = ()

    def query(self, sql: str, parameters: Any = None) -> _NoRows:
        return self

    def close(self) -> None:
        pass


def sign_in(app: FastAPI, store: Store | None = None) -> dict[str, str]:
    """Make ``app`` know a caller who owns meeting ``m1``; return the caller's request headers."""
    user = new_user(CALLER_ID, "ana", "ana@example.com", hash_password("p" * 8, n=2), "member", "", 1)
    app.state.store = store or Store(ClientPool([_NoRows()], reconnect=_NoRows, dsn="chdb://fake"), "palaver")
    app.state.secret, app.state.users, app.state.sessions = b"k" * 32, UserDirectory(), Sessions()
    app.state.meetings = MeetingDirectory()
    app.state.users.recent.put(user.user_id, user)
    app.state.meetings.meetings.put(MEETING_ID, MeetingRecord(MEETING_ID, "Standup", CALLER_ID, 1, 1))
    return {"Authorization": f"Bearer {start_session(app.state.secret, user, 900, 3600).access}"}
