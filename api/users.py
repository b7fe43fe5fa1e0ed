"""User accounts. Each write becomes a ``user.changed`` event (the user's whole new state) on the ``users``
topic, keyed by ``user_id``; the store writer upserts it into ``users``. Responses never carry the password
or its hash, and the plaintext goes nowhere but the KDF.

Anyone may register (``PALAVER_REGISTRATION``); a new account is always a ``member``. A signed-in user sees
and changes only their own account, admins every account; only an admin sets a role. Changing one's own
password asks for the current one. Another user's account answers 404, as an unknown one does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field, SecretStr

from api import queries
from api.idempotency import KEY_MAX_LENGTH
from api.identity import Caller, MaybeSignedIn, SignedIn
from api.passwords import hash_password, verify_password
from api.user_state import RecentWrites, UserRecord, conflicts, new_user, newest
from palaver import ids
from palaver.events import encode
from palaver.events.users_v1 import UserChange, UserRole

router = APIRouter(tags=["users"])

UserId = Annotated[str, Path(pattern=r"^usr_[0-9a-f]{24}$", description="The user's id (usr_...)")]
Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{3,64}$", description="3-64 of [A-Za-z0-9._-]; unique, case-insensitively")]  # fmt: skip
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="Unique, case-insensitively")]  # fmt: skip
PictureUrl = Annotated[
    str, Field(max_length=2048, pattern=r"^(https?://\S+)?$", description="http(s) URL or empty")
]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=KEY_MAX_LENGTH,
                                              description="Retries with the same key create one user")]  # fmt: skip
PASSWORD_LENGTH = (8, 1024)


class UserCreate(BaseModel):
    username: Username
    email: Email
    password: SecretStr = Field(
        description="8-1024 characters; stored only as a salted scrypt hash",
        json_schema_extra={"minLength": 8, "maxLength": 1024},
    )
    role: UserRole = "member"
    profile_pic_url: PictureUrl = ""


class UserPatch(BaseModel):
    username: Username | None = None
    email: Email | None = None
    role: UserRole | None = None
    profile_pic_url: PictureUrl | None = None
    password: SecretStr | None = Field(
        default=None,
        description="A new password (8-1024 characters)",
        json_schema_extra={"minLength": 8, "maxLength": 1024},
    )
    current_password: SecretStr | None = Field(default=None, description="Required to change the password")


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


def _password(secret: SecretStr, name: str = "password") -> str:
    value = secret.get_secret_value()
    if not PASSWORD_LENGTH[0] <= len(value) <= PASSWORD_LENGTH[1]:
        # Said without the value: a validation error must not echo a password.
        raise HTTPException(
            status_code=422, detail=f"{name}: {PASSWORD_LENGTH[0]}-{PASSWORD_LENGTH[1]} characters"
        )
    return value


def _conflict(taken: list[str]) -> HTTPException:
    return HTTPException(status_code=409, detail=f"{' and '.join(taken)} already taken")


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.post("/v1/users", status_code=201, response_model=UserOut,
             responses={401: {"description": "a credential was sent and is not valid"},
                        403: {"description": "only admins give a role other than member"},
                        409: {"description": "username or email already taken"}})  # fmt: skip
async def create_user(
    request: Request, caller: MaybeSignedIn, body: UserCreate, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Register a user (anonymous callers may). The response is the user (never the password or its hash)
    once the event is durable in Kafka; reads see it as soon as the store writer has it (normally well under
    a second). A retry with the same ``Idempotency-Key`` answers with the user the first request created."""
    if body.role != "member" and (caller is None or not caller.is_admin):
        raise HTTPException(status_code=403, detail="only admins create accounts with another role than member")
    directory = _directory(request)
    user_id = ids.user_id(idempotency_key or uuid.uuid4().hex)
    password_hash = await asyncio.to_thread(hash_password, _password(body.password))
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


@router.get("/v1/users", response_model=UserList, responses={401: {"description": "not signed in"}})
async def list_users(
    request: Request,
    caller: SignedIn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    username: Annotated[str | None, Query(max_length=64, description="Only this username")] = None,
    email: Annotated[str | None, Query(max_length=254, description="Only this email")] = None,
) -> dict[str, Any]:
    """Users (not deleted) ordered by username, as the store has them: every user for an admin, only the
    caller's own account for anyone else (the people of a meeting: ``GET /v1/meetings/{m}/participants``)."""
    rows = await queries.users(request.app.state.store, limit, offset, username, email)
    if not caller.is_admin:
        rows = [r for r in rows if r["user_id"] == caller.user_id]
    return {"users": [UserRecord.from_row(r).public() for r in rows], "limit": limit, "offset": offset}


def _own(caller: Caller, user_id: str) -> None:
    """404 unless the caller is the user or an admin: another's account answers as an unknown one."""
    if caller.user_id != user_id and not caller.is_admin:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")


SELF_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"}, 404: {"description": "no such user, or not the caller's account"}
}


@router.get("/v1/users/{user_id}", response_model=UserOut, responses=SELF_ONLY)
async def get_user(request: Request, caller: SignedIn, user_id: UserId) -> dict[str, Any]:
    """The caller's own account (admins: any)."""
    _own(caller, user_id)
    found = await _directory(request).get(request, user_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return found.public()


@router.patch("/v1/users/{user_id}", response_model=UserOut,
              responses={**SELF_ONLY,
                         403: {"description": "current_password does not match, or a role change by a non-admin"},
                         409: {"description": "username or email already taken"}})  # fmt: skip
async def update_user(request: Request, caller: SignedIn, user_id: UserId, body: UserPatch) -> dict[str, Any]:
    """Change the fields given: ``username``, ``email``, ``profile_pic_url``, ``role`` (admins only), and
    ``password`` (one's own with ``current_password``; an admin resets another's without). A password
    change ends every session of the user. Answers with the user's new state."""
    _own(caller, user_id)
    if body.role is not None and not caller.is_admin:
        raise HTTPException(status_code=403, detail="only admins change roles")
    directory = _directory(request)
    fields = body.model_dump(exclude={"password", "current_password"}, exclude_none=True)
    if not fields and body.password is None:
        raise HTTPException(status_code=422, detail="name at least one field to change")
    new_hash = None
    checked_hash = None
    if body.password is not None and caller.user_id != user_id:  # an admin's reset
        new_hash = await asyncio.to_thread(hash_password, _password(body.password))
    elif body.password is not None:
        if body.current_password is None:
            raise HTTPException(status_code=422, detail="current_password is required to change the password")
        new_password = _password(body.password)
        current = await directory.get(request, user_id)
        if current is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        checked_hash = current.password_hash
        if not await asyncio.to_thread(
            verify_password, body.current_password.get_secret_value(), checked_hash
        ):
            raise HTTPException(status_code=403, detail="current_password does not match")
        new_hash = await asyncio.to_thread(hash_password, new_password)
    async with directory.lock:
        known = await directory.lookup(request, [user_id], fields.get("username"), fields.get("email"))
        current = known.get(user_id)
        if current is None or current.deleted:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        if checked_hash is not None and current.password_hash != checked_hash:
            raise HTTPException(status_code=409, detail="the password changed meanwhile; try again")
        taken = conflicts(known.values(), fields.get("username"), fields.get("email"), user_id)
        if taken:
            raise _conflict(taken)
        if new_hash is not None:
            fields["password_hash"] = new_hash
        record = current.changed(_now_ms(), **fields)
        await directory.publish(
            request, record, "password_changed" if list(fields) == ["password_hash"] else "updated"
        )
    return record.public()


@router.delete("/v1/users/{user_id}", status_code=204, responses=SELF_ONLY)
async def delete_user(request: Request, caller: SignedIn, user_id: UserId) -> Response:
    """Soft delete (one's own account; admins: any): the user disappears from reads, can no longer sign in,
    and frees its username and email; the row (and the compacted log's newest state) stays, marked
    deleted."""
    _own(caller, user_id)
    directory = _directory(request)
    async with directory.lock:
        current = await directory.get(request, user_id)
        if current is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        await directory.publish(request, current.changed(_now_ms(), deleted=True), "deleted")
    return Response(status_code=204)


SECRET_FIELDS = frozenset({"password", "current_password", "token", "refresh_token", "ticket"})


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
