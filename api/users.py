"""User accounts. Each write becomes a ``user.changed`` event (the user's whole new state) on the ``users``
topic, keyed by ``user_id``; the store writer upserts it into ``users``. Responses never carry the password
or its hash, and the plaintext goes nowhere but the KDF.

Usernames and emails are unique, case-insensitively, across every API process: the name registry
(``api.name_registry``) decides each name in one place. A registration claims both names and creates the
user only when both are granted; when one is refused it releases the other and answers 409. A rename
claims the new name before the change and releases the old one after it; a delete releases both.

Registration (``POST /v1/users``) follows ``PALAVER_REGISTRATION`` (``api.registration``; a signed-in admin
may always create accounts), is limited per client address, and always creates a ``member``. A signed-in
user sees and changes only their own account, admins every account; only an admin sets a role. Changing
one's own password asks for the current one. Another user's account answers 404, as an unknown one does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from api import fields, queries
from api.idempotency import KEY_MAX_LENGTH
from api.identity import Caller, MaybeSignedIn, SignedIn
from api.name_claims import NameClaims
from api.names import kind_of, user_names
from api.passwords import hash_password, verify_password
from api.registration import RegistrationDesk, registration_allowed
from api.responses import declared
from api.user_state import RecentWrites, UserRecord, new_user, newest
from palaver import ids
from palaver.events import encode
from palaver.events.users_v1 import UserChange, UserRole

log = logging.getLogger(__name__)
router = APIRouter(tags=["users"])
NAME_RETRY_AFTER_S = 2  # the Retry-After of a 503 when the name registry did not answer in time

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
    """A new account; it is always a ``member`` (only an admin gives roles, so ``role`` is refused here)."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: Email
    password: fields.Password = Field(description="8-1024 characters; stored only as a salted scrypt hash")
    profile_pic_url: PictureUrl = ""
    invite: str | None = Field(
        default=None, max_length=4096,
        description="An invite code (`palaver admin invite`); required when PALAVER_REGISTRATION=invite",
    )  # fmt: skip


class UserPatch(BaseModel):
    """The fields to change (at least one); a new ``password`` comes with ``current_password``: the
    account's own, or an admin's own when an admin resets another's (signing in again, in effect)."""

    model_config = ConfigDict(json_schema_extra=PATCH_RULES.json_schema)

    username: Username = fields.omittable()
    email: Email = fields.omittable()
    role: UserRole = fields.omittable()
    profile_pic_url: PictureUrl = fields.omittable()
    password: fields.Password = fields.omittable(description="A new password (8-1024 characters)")
    current_password: SecretStr = fields.omittable(description="Required to change a password")

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
    Writes are serialized so a change is built from the newest state and published before the next."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.recent: RecentWrites[UserRecord] = RecentWrites()

    async def lookup(self, request: Request, user_ids: list[str]) -> dict[str, UserRecord]:
        """The newest state of ``user_ids``, by the store or by this process's own writes, whichever is
        newer (deleted users included)."""
        rows = [UserRecord.from_row(r) for r in await queries.users_by_id(request.app.state.store, sorted(user_ids))]
        return newest(rows, [u for u in self.recent.values() if u.user_id in user_ids])

    async def display_names(self, request: Request, user_ids: list[str]) -> dict[str, str]:
        """The name to show for each of ``user_ids``: its username; a deleted or unknown user (its name may
        belong to someone else by now) keeps its id, as ``GET /v1/meetings/{m}/dialogues`` shows it."""
        found = await self.lookup(request, sorted(set(user_ids)))
        return {u: found[u].username if u in found and not found[u].deleted else u for u in user_ids}

    async def named(self, request: Request, name: str) -> UserRecord | None:
        """The live user whose username or email is ``name`` (case-insensitively), in its newest state."""
        wanted = name.strip().lower()
        stored = await queries.users_named(request.app.state.store, wanted)
        candidates = {r["user_id"] for r in stored} | {
            u.user_id for u in self.recent.values() if wanted in (u.username.lower(), u.email.lower())
        }
        found = await self.lookup(request, sorted(candidates))
        live = [u for u in found.values() if not u.deleted and wanted in (u.username.lower(), u.email.lower())]
        return live[0] if live else None

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


async def _release(request: Request, names: list[str], user_id: str) -> None:
    """Best effort: a release that does not reach Kafka leaves the name held by ``user_id`` (logged)."""
    if not names:
        return
    try:
        await _claims(request).release(names, user_id)
    except (KafkaError, OSError) as exc:
        log.error("could not release %d name(s) of %s: %s", len(names), user_id, exc)


def _claims(request: Request) -> NameClaims:
    return request.app.state.names  # type: ignore[no-any-return]


async def claim_names(request: Request, names: list[str], user_id: str) -> None:
    """Claim ``names`` for ``user_id`` through the name registry. When any is refused or unanswered,
    release the others (a late grant included) and raise 409 naming what is taken, or 503."""
    if not names:
        return
    claims = _claims(request)
    outcome = await claims.claim(names, user_id, request.app.state.registration.settings.name_claim_timeout_s)
    if outcome.all_granted:
        return
    await _release(request, outcome.granted + outcome.unanswered, user_id)
    if outcome.refused:
        raise _conflict(sorted({kind_of(n) for n in outcome.refused}, key=("username", "email").index))
    raise HTTPException(status_code=503, detail="the name registry did not answer in time; try again",
                        headers={"Retry-After": str(NAME_RETRY_AFTER_S)})  # fmt: skip


def client_address(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy: what uvicorn's proxy headers say)."""
    return request.client.host if request.client else "unknown"


def _admit(request: Request, invite: str | None, caller_is_admin: bool) -> RegistrationDesk:
    """403 unless ``PALAVER_REGISTRATION`` lets this caller register; 429 beyond the per-address limit."""
    desk: RegistrationDesk = request.app.state.registration
    admission = registration_allowed(desk.settings, caller_is_admin=caller_is_admin, invite=invite, secret=desk.secret(),
                                     now_ms=_now_ms())  # fmt: skip
    if not admission:
        raise HTTPException(status_code=403, detail=admission.reason)
    retry_after = desk.per_address.acquire(client_address(request))
    if retry_after is not None:
        raise HTTPException(status_code=429, detail="too many registrations from this address; try again later",
                            headers={"Retry-After": str(retry_after)})  # fmt: skip
    return desk


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.post("/v1/users", status_code=201, response_model=UserOut,
             responses=declared(400, 401, 403, 409, 429, notes={
                 401: "A credential was sent and is not valid (registering needs none)",
                 403: "Registration is closed, or by invitation and the invite is missing or invalid",
                 409: "The username or email is taken", 429: "Too many registrations from this address",
             }))  # fmt: skip
async def create_user(
    request: Request, caller: MaybeSignedIn, body: UserCreate, idempotency_key: IdempotencyKey = None
) -> dict[str, Any]:
    """Register a ``member`` (anonymous callers may, as ``PALAVER_REGISTRATION`` allows). The response is
    the user (never the password or its hash) once the event is durable in Kafka; reads see it as soon as
    the store writer has it (normally well under a second). A retry with the same ``Idempotency-Key``
    answers with the user the first request created."""
    password = body.password.get_secret_value()
    _admit(request, body.invite, caller is not None and caller.is_admin)
    directory = _directory(request)
    user_id = ids.user_id(idempotency_key or uuid.uuid4().hex)
    known = await directory.lookup(request, [user_id])
    if user_id in known:
        if known[user_id].deleted:
            raise HTTPException(status_code=409, detail="this Idempotency-Key created a user since deleted")
        return known[user_id].public()
    password_hash = await asyncio.to_thread(hash_password, password)
    names = list(user_names(body.username, body.email).values())
    await claim_names(request, names, user_id)
    record = new_user(user_id, body.username, body.email, password_hash, "member", body.profile_pic_url, _now_ms())
    try:
        async with directory.lock:
            await directory.publish(request, record, "created")
    except BaseException:
        await _release(request, names, user_id)
        raise
    return record.public()


@router.get("/v1/users", response_model=UserList, responses=declared(401))
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


SELF_ONLY = declared(401, 404, notes={404: "No such user, or not the caller's account"})


@router.get("/v1/users/{user_id}", response_model=UserOut, responses=SELF_ONLY)
async def get_user(request: Request, caller: SignedIn, user_id: UserId) -> dict[str, Any]:
    """The caller's own account (admins: any)."""
    _own(caller, user_id)
    found = await _directory(request).get(request, user_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return found.public()


@router.patch("/v1/users/{user_id}", response_model=UserOut,
              responses=declared(400, 401, 403, 404, 409, notes={
                  403: "`current_password` does not match, or a role change by a non-admin",
                  404: "No such user, or not the caller's account",
                  409: "The username or email is taken, or the password changed meanwhile"}))  # fmt: skip
async def update_user(request: Request, caller: SignedIn, user_id: UserId, body: UserPatch) -> dict[str, Any]:
    """Change the fields given: ``username``, ``email``, ``profile_pic_url``, ``role`` (admins only), and
    ``password`` (with ``current_password``: the account's own, or the admin's own when an admin resets
    another's). A password change ends every session of the user. Answers with the user's new state."""
    _own(caller, user_id)
    if "role" in body.model_fields_set and not caller.is_admin:
        raise HTTPException(status_code=403, detail="only admins change roles")
    directory = _directory(request)
    changes = body.model_dump(include=set(CHANGEABLE) - {"password"}, exclude_unset=True)
    new_hash = None
    checked_hash = None
    if "password" in body.model_fields_set:  # the model made sure current_password came with it
        current = await directory.get(request, user_id)
        signer = current if caller.user_id == user_id else await directory.get(request, caller.user_id)
        if current is None or signer is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        checked_hash = current.password_hash
        if not await asyncio.to_thread(verify_password, body.current_password.get_secret_value(),
                                       signer.password_hash):  # fmt: skip
            raise HTTPException(status_code=403, detail="current_password does not match")
        new_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    claimed: list[str] = []
    if "username" in changes or "email" in changes:
        before = await directory.get(request, user_id)
        if before is None:
            raise HTTPException(status_code=404, detail=f"no user {user_id}")
        held = set(user_names(before.username, before.email).values())
        wanted = user_names(changes.get("username", before.username), changes.get("email", before.email))
        claimed = [name for name in wanted.values() if name not in held]
        await claim_names(request, claimed, user_id)
    try:
        async with directory.lock:
            current = (await directory.lookup(request, [user_id])).get(user_id)
            if current is None or current.deleted:
                raise HTTPException(status_code=404, detail=f"no user {user_id}")
            if checked_hash is not None and current.password_hash != checked_hash:
                raise HTTPException(status_code=409, detail="the password changed meanwhile; try again")
            if new_hash is not None:
                changes["password_hash"] = new_hash
            record = current.changed(_now_ms(), **changes)
            await directory.publish(
                request, record, "password_changed" if list(changes) == ["password_hash"] else "updated"
            )
    except BaseException:
        await _release(request, claimed, user_id)
        raise
    kept = set(user_names(record.username, record.email).values())
    await _release(request, [n for n in user_names(current.username, current.email).values() if n not in kept], user_id)
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
    # After the deletion is durable: a crash between the two leaves the names held (never two holders).
    await _release(request, list(user_names(current.username, current.email).values()), user_id)
    return Response(status_code=204)


SECRET_FIELDS = frozenset({"password", "current_password", "token", "refresh_token", "ticket", "invite"})


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
