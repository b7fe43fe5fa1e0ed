"""User accounts. Each write becomes a ``user.changed`` event (the user's whole new state) on the ``users``
topic, keyed by ``user_id``; the store writer upserts it into ``users``. Responses never carry the password
or its hash, and the plaintext goes nowhere but the KDF.

There is no authentication yet: anyone who can reach the API can create and change users. Changing a
password asks for the current one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from api import fields, queries
from api.idempotency import KEY_MAX_LENGTH
from api.passwords import hash_password, verify_password
from api.responses import declared
from api.user_state import RecentWrites, UserRecord, conflicts, new_user, newest
from palaver import ids
from palaver.events import encode
from palaver.events.users_v1 import UserChange, UserRole

router = APIRouter(tags=["users"])

UserId = Annotated[str, Path(pattern=fields.USER_ID, description="The user's id (usr_...)")]
Username = Annotated[str, Field(pattern=fields.USERNAME, description="3-64 of [A-Za-z0-9._-]; unique, case-insensitively")]  # fmt: skip
Email = Annotated[str, Field(max_length=254, pattern=fields.EMAIL, description="Unique, case-insensitively")]  # fmt: skip
PictureUrl = Annotated[
    str, Field(max_length=2048, pattern=fields.HTTP_URL_OR_EMPTY, description="http(s) URL or empty")
]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=KEY_MAX_LENGTH,
                                              description="Retries with the same key create one user")]  # fmt: skip
CHANGEABLE = ("username", "email", "role", "profile_pic_url", "password")
PATCH_RULES = fields.BodyRules(at_least_one_of=CHANGEABLE, requires={"password": "current_password"})


class UserCreate(BaseModel):
    username: Username
    email: Email
    password: fields.Password = Field(description="8-1024 characters; stored only as a salted scrypt hash")
    role: UserRole = "member"
    profile_pic_url: PictureUrl = ""


class UserPatch(BaseModel):
    """The fields to change (at least one); a new ``password`` comes with the ``current_password``."""

    model_config = ConfigDict(json_schema_extra=PATCH_RULES.json_schema)

    username: Username = fields.omittable()
    email: Email = fields.omittable()
    role: UserRole = fields.omittable()
    profile_pic_url: PictureUrl = fields.omittable()
    password: fields.Password = fields.omittable(description="A new password (8-1024 characters)")
    current_password: SecretStr = fields.omittable(description="Required to change the password")

    @model_validator(mode="after")
    def _follows_the_rules(self) -> UserPatch:
        PATCH_RULES.check(self)
        return self


class UserOut(BaseModel):
    user_id: str
    username: str
    email: str
    role: str
    profile_pic_url: str
    created_at_ms: int
    updated_at_ms: int


class UserList(BaseModel):
    users: list[UserOut]
    limit: int
    offset: int


class UserDirectory:
    """This process's view of users: the store plus its own recent writes (see ``api.user_state``).
    Writes are serialized so a uniqueness check and the publish it guards are not interleaved."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.recent: RecentWrites[UserRecord] = RecentWrites()

    async def lookup(self, request: Request, user_ids: list[str], username: str | None = None,
                     email: str | None = None) -> dict[str, UserRecord]:  # fmt: skip
        """The newest state of ``user_ids`` and of every user that has ``username`` or ``email``, by the
        store or by this process's own writes, whichever is newer (deleted users included)."""
        recent = self.recent.values()
        wanted = set(user_ids) | {
            u.user_id for u in recent
            if (username and u.username.lower() == username.lower()) or (email and u.email.lower() == email.lower())
        }  # fmt: skip
        rows = [UserRecord.from_row(r) for r in await queries.users_matching(
            request.app.state.store, sorted(wanted), username, email)]  # fmt: skip
        wanted |= {r.user_id for r in rows}
        return newest(rows, [u for u in recent if u.user_id in wanted])

    async def get(self, request: Request, user_id: str) -> UserRecord | None:
        """The user's newest state, or None when unknown or deleted."""
        found = (await self.lookup(request, [user_id])).get(user_id)
        return None if found is None or found.deleted else found

    async def publish(self, request: Request, record: UserRecord, change: UserChange) -> None:
        await request.app.state.producer.send_and_wait(
            request.app.state.users_topic, encode(record.event(change)), key=record.user_id.encode()
        )
        self.recent.put(record.user_id, record)


def _directory(request: Request) -> UserDirectory:
    return request.app.state.users  # type: ignore[no-any-return]


def _conflict(taken: list[str]) -> HTTPException:
    return HTTPException(status_code=409, detail=f"{' and '.join(taken)} already taken")


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.post("/v1/users", status_code=201, response_model=UserOut,
             responses=declared(400, 409, notes={409: "The username or email is taken"}))  # fmt: skip
async def create_user(
    request: Request, body: UserCreate, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Create a user. The response is the user (never the password or its hash) once the event is durable
    in Kafka; reads see it as soon as the store writer has it (normally well under a second). A retry
    with the same ``Idempotency-Key`` answers with the user the first request created."""
    directory = _directory(request)
    user_id = ids.user_id(idempotency_key or uuid.uuid4().hex)
    password_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    async with directory.lock:
        known = await directory.lookup(request, [user_id], body.username, body.email)
        if user_id in known:
            if known[user_id].deleted:
                raise HTTPException(
                    status_code=409, detail="this Idempotency-Key created a user since deleted"
                )
            return known[user_id].public()
        taken = conflicts(known.values(), body.username, body.email, None)
        if taken:
            raise _conflict(taken)
        record = new_user(user_id, body.username, body.email, password_hash, body.role, body.profile_pic_url,
                          _now_ms())  # fmt: skip
        await directory.publish(request, record, "created")
    return record.public()


@router.get("/v1/users", response_model=UserList)
async def list_users(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    username: Annotated[str | None, Query(max_length=64, description="Only this username")] = None,
    email: Annotated[str | None, Query(max_length=254, description="Only this email")] = None,
) -> dict[str, Any]:
    """Users (not deleted) ordered by username, as the store has them."""
    rows = await queries.users(request.app.state.store, limit, offset, username, email)
    return {"users": [UserRecord.from_row(r).public() for r in rows], "limit": limit, "offset": offset}


@router.get("/v1/users/{user_id}", response_model=UserOut, responses=declared(404, notes={404: "No such user"}))
async def get_user(request: Request, user_id: UserId) -> dict[str, Any]:
    found = await _directory(request).get(request, user_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return found.public()


@router.patch("/v1/users/{user_id}", response_model=UserOut, responses=declared(
    400, 403, 404, 409, notes={403: "`current_password` does not match", 404: "No such user",
                               409: "The username or email is taken, or the password changed meanwhile"}))  # fmt: skip
async def update_user(request: Request, user_id: UserId, body: UserPatch) -> dict[str, Any]:
    """Change the fields given: ``username``, ``email``, ``role``, ``profile_pic_url``, and ``password``
    (with ``current_password``). Answers with the user's new state."""
    directory = _directory(request)
    changes = body.model_dump(include=set(CHANGEABLE) - {"password"}, exclude_unset=True)
    new_hash = None
    checked_hash = None
    if "password" in body.model_fields_set:  # the model made sure the current password came with it
        current = await directory.get(request, user_id)
        if current is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        checked_hash = current.password_hash
        if not await asyncio.to_thread(
            verify_password, body.current_password.get_secret_value(), checked_hash
        ):
            raise HTTPException(status_code=403, detail="current_password does not match")
        new_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    async with directory.lock:
        known = await directory.lookup(request, [user_id], changes.get("username"), changes.get("email"))
        current = known.get(user_id)
        if current is None or current.deleted:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        if checked_hash is not None and current.password_hash != checked_hash:
            raise HTTPException(status_code=409, detail="the password changed meanwhile; try again")
        taken = conflicts(known.values(), changes.get("username"), changes.get("email"), user_id)
        if taken:
            raise _conflict(taken)
        if new_hash is not None:
            changes["password_hash"] = new_hash
        record = current.changed(_now_ms(), **changes)
        await directory.publish(
            request, record, "password_changed" if list(changes) == ["password_hash"] else "updated"
        )
    return record.public()


@router.delete("/v1/users/{user_id}", status_code=204, responses=declared(404, notes={404: "No such user"}))
async def delete_user(request: Request, user_id: UserId) -> Response:
    """Soft delete: the user disappears from reads and frees its username and email; the row (and the
    compacted log's newest state) stays, marked deleted."""
    directory = _directory(request)
    async with directory.lock:
        current = await directory.get(request, user_id)
        if current is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        await directory.publish(request, current.changed(_now_ms(), deleted=True), "deleted")
    return Response(status_code=204)


SECRET_FIELDS = frozenset({"password", "current_password"})


def redact_secrets(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without any password in them: FastAPI's 422 echoes each error's ``input``, which
    is the password itself for a password error and the whole body (password included) for a missing
    field."""
    out = []
    for error in errors:
        error = dict(error)
        value = error.get("input")
        if SECRET_FIELDS & {str(part) for part in error.get("loc", ())}:
            error.pop("input", None)
        elif isinstance(value, dict) and SECRET_FIELDS & value.keys():
            error["input"] = {k: ("**********" if k in SECRET_FIELDS else v) for k, v in value.items()}
        out.append(error)
    return out
